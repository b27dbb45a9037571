package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// library describes one shared library gotune loads at run time: the names
// the dynamic loader may know it by, the file patterns to look for in the
// usual folders, and how a user gets it.
type library struct {
	what    string
	sonames []string
	globs   []string
	install string
}

var (
	libDriver = library{
		what:    "the NVIDIA driver's CUDA library",
		sonames: []string{"libcuda.so.1", "libcuda.so"},
		globs:   []string{"libcuda.so.1", "libcuda.so"},
		install: "install the NVIDIA driver (it ships libcuda.so.1); inside a container, run it with the GPU exposed (e.g. --gpus all)",
	}
	libNVRTC = library{
		what:    "NVRTC, CUDA's run-time compiler",
		sonames: []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"},
		globs:   []string{"libnvrtc.so.*[0-9]", "libnvrtc.so"},
		install: "install the CUDA toolkit's NVRTC (Debian/Ubuntu: libnvrtc12 or cuda-nvrtc-12-x; pip: nvidia-cuda-nvrtc-cu12) or point LD_LIBRARY_PATH at a folder holding libnvrtc.so.*",
	}
	libCUBLAS = library{
		what:    "cuBLAS",
		sonames: []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"},
		globs:   []string{"libcublas.so.*[0-9]", "libcublas.so"},
		install: "install cuBLAS (Debian/Ubuntu: libcublas12 or libcublas-12-x; pip: nvidia-cublas-cu12) or point LD_LIBRARY_PATH at a folder holding libcublas.so.*",
	}
)

// searchDirs lists the folders where CUDA libraries usually live, beyond what
// the dynamic loader already searches: the toolkit's folders and the
// nvidia-* wheels of Python environments (which is where PyTorch users have
// them).
func searchDirs() []string {
	var dirs []string
	add := func(pattern string) {
		m, _ := filepath.Glob(pattern)
		sort.Sort(sort.Reverse(sort.StringSlice(m))) // newest version first
		dirs = append(dirs, m...)
	}
	for _, d := range filepath.SplitList(os.Getenv("LD_LIBRARY_PATH")) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	if h := os.Getenv("CUDA_HOME"); h != "" {
		dirs = append(dirs, filepath.Join(h, "lib64"), filepath.Join(h, "lib"))
	}
	if h := os.Getenv("CUDA_PATH"); h != "" {
		dirs = append(dirs, filepath.Join(h, "lib64"), filepath.Join(h, "lib"))
	}
	add("/usr/local/cuda/lib64")
	add("/usr/local/cuda/targets/*/lib")
	add("/usr/local/cuda-*/lib64")
	add("/usr/local/cuda-*/targets/*/lib")
	add("/usr/local/nvidia/lib64")
	add("/usr/lib/x86_64-linux-gnu")
	add("/usr/lib/aarch64-linux-gnu")
	add("/usr/lib64")
	add("/usr/lib/wsl/lib")
	for _, root := range []string{"/opt/*", "/opt/*/.venv", "/usr/local", "/usr", os.ExpandEnv("$HOME/.local"), os.Getenv("VIRTUAL_ENV"), os.Getenv("CONDA_PREFIX")} {
		if root == "" || root == "/.local" {
			continue
		}
		add(filepath.Join(root, "lib/python3*/site-packages/nvidia/*/lib"))
		add(filepath.Join(root, "lib/python3*/site-packages/nvidia/cu*/lib"))
		add(filepath.Join(root, "lib/python3*/dist-packages/nvidia/*/lib"))
	}
	seen := map[string]bool{}
	out := dirs[:0]
	for _, d := range dirs {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// candidates lists what to try for lib, in order: the plain names (the
// loader's own search, LD_LIBRARY_PATH included), then files found in the
// usual folders.
func (l library) candidates(dirs []string) []string {
	c := append([]string(nil), l.sonames...)
	for _, d := range dirs {
		for _, g := range l.globs {
			m, _ := filepath.Glob(filepath.Join(d, g))
			sort.Sort(sort.Reverse(sort.StringSlice(m)))
			c = append(c, m...)
		}
	}
	return c
}

// open loads lib with dlopen, trying each candidate; the error says what is
// missing, where gotune looked and how to install it.
func (l library) open(dlopen func(string) (uintptr, error)) (uintptr, string, error) {
	dirs := searchDirs()
	var first error
	for _, name := range l.candidates(dirs) {
		h, err := dlopen(name)
		if err == nil {
			return h, name, nil
		}
		if first == nil {
			first = err
		}
	}
	return 0, "", &MissingLibraryError{What: l.what, Names: l.sonames, Dirs: dirs, Install: l.install, Err: first}
}

// MissingLibraryError says which CUDA library could not be loaded.
type MissingLibraryError struct {
	What    string
	Names   []string
	Dirs    []string
	Install string
	Err     error
}

func (e *MissingLibraryError) Error() string {
	where := strings.Join(e.Dirs, ", ")
	if len(where) > 400 {
		where = where[:400] + "…"
	}
	msg := fmt.Sprintf("cuda: %s not found (tried %s, then the folders %s): %s", e.What, strings.Join(e.Names, ", "), where, e.Install)
	if e.Err != nil {
		msg += fmt.Sprintf(" [last loader error: %v]", e.Err)
	}
	return msg
}

func (e *MissingLibraryError) Unwrap() error { return e.Err }
