package cpu

import (
	"syscall"
	"unsafe"
)

// guarded copies s to the end of a fresh mapping whose next page is
// inaccessible, so that reading past s faults instead of passing unnoticed.
func guarded(s []float32) ([]float32, func()) {
	page := syscall.Getpagesize()
	size := (len(s)*4+page-1)/page*page + page
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		panic(err)
	}
	if err := syscall.Mprotect(mem[size-page:], syscall.PROT_NONE); err != nil {
		panic(err)
	}
	end := size - page
	out := unsafe.Slice((*float32)(unsafe.Pointer(&mem[end-len(s)*4])), len(s))
	copy(out, s)
	return out, func() { syscall.Munmap(mem) }
}
