package manager

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpenLogFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "log")
	f, err := openLogFIFO(fifo)
	if err != nil {
		t.Fatalf("missing log: %v", err)
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 || fi.Mode().Perm() != 0o700&^umask() {
		t.Fatalf("made %v, %v; want a FIFO, 0700 less the umask", fi.Mode(), err)
	}
	// What a shim writes comes out.
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString("shim says\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	buf := make([]byte, 64)
	if n, err := f.Read(buf); err != nil || string(buf[:n]) != "shim says\n" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	f.Close()
	// An existing FIFO is opened again.
	if f, err = openLogFIFO(fifo); err != nil {
		t.Fatalf("existing FIFO: %v", err)
	}
	f.Close()

	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{regular, link, dir} {
		if f, err := openLogFIFO(p); err == nil {
			f.Close()
			t.Errorf("%s opened as the shim log", p)
		}
	}
}

func umask() os.FileMode {
	m := unix.Umask(0)
	unix.Umask(m)
	return os.FileMode(m)
}
