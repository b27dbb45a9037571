package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"gotune/assets"
	"gotune/hub"
	"gotune/ui"
)

// rootFlags collects repeated --root values.
type rootFlags []string

func (r *rootFlags) String() string     { return strings.Join(*r, ",") }
func (r *rootFlags) Set(v string) error { *r = append(*r, v); return nil }

func runUI(args []string, stdout, stderr io.Writer) error {
	ctx, stop := signalContext()
	defer stop()
	return uiMain(ctx, args, stdout, stderr, nil)
}

// uiMain serves the web UI until ctx ends; ready, when set, gets the URL.
func uiMain(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(url string)) error {
	fs := newFlagSet("ui", `usage: gotune ui [flags]

Serves gotune's web page: pick models and data, inspect the data as 'gotune data inspect'
does, start, stop and resume training runs (child 'gotune train' processes that outlive the
page), watch their charts, chat with the result and export it. The API the page uses is
documented in the ui package (go doc gotune/ui).`, args, stdout, stderr)
	var roots rootFlags
	fs.Var(&roots, "root", "folder the page may read and write under, repeatable (default: the working directory)")
	host := fs.String("host", "127.0.0.1", "address to bind; anything but loopback needs --token")
	port := fs.Int("port", 7860, "port (0: any free port)")
	token := fs.String("token", os.Getenv("GOTUNE_UI_TOKEN"), "token every request must carry (default $GOTUNE_UI_TOKEN)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q (folders are given with --root)", pos[0])
	}
	addr := net.JoinHostPort(*host, strconv.Itoa(*port))
	if err := ui.CheckAddr(addr, *token); err != nil {
		return err
	}
	// The bundled model and data are offered read-only, so the page works
	// out of the box as the quickstart does.
	var readOnly []string
	if d, err := assets.ModelDir(assets.DefaultModel, ""); err == nil {
		readOnly = append(readOnly, d)
	}
	if d, err := assets.DataDir(""); err == nil {
		readOnly = append(readOnly, d)
	}
	// Models already downloaded (gotune's Hub cache and huggingface_hub's)
	// are offered too, read-only.
	hc := hub.NewClient()
	for _, d := range []string{hc.CacheDir, hc.HFCacheDir} {
		if st, err := os.Stat(d); d != "" && err == nil && st.IsDir() {
			readOnly = append(readOnly, d)
		}
	}
	// Chat and evaluation in the page run on the CPU backend (training
	// runs as `gotune train`, on the device its config names).
	s, err := ui.New(ui.Options{Roots: roots, Token: *token, ReadOnly: readOnly, Log: stderr,
		Backend: cpuBackend})
	if err != nil {
		return err
	}
	return s.Serve(ctx, addr, func(url string) {
		fmt.Fprintf(stdout, "gotune ui: open %s (folders: %s); Ctrl-C stops the server, not running trainings\n", url, strings.Join(s.Roots(), ", "))
		if ready != nil {
			ready(url)
		}
	})
}
