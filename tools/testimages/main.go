// Command testimages builds the container images that shimkeeper's CRI
// tests run, from bin/toybox, and serves them from an in-memory OCI
// registry (go-containerregistry's pkg/registry) on loopback, plain HTTP.
// Nothing is pulled from anywhere: the images are made here, byte for byte
// the same on every run (fixed timestamps, sorted entries), so their
// digests are stable.
//
// It is its own Go module (tools/testimages/go.mod) so that
// go-containerregistry and its dependencies never reach the versions that
// shimkeeper's go.mod pins for containerd.
//
// Usage:
//
//	testimages -toybox bin/toybox [-listen 127.0.0.1:0] [-state FILE] [-exit-on-eof] [-critest]
//
// Images served (see images below): pause:3.10 (toybox's pause applet as
// /pause, what CRI runs as the pod sandbox) and toybox:1 (a busybox-style
// rootfs: /bin/toybox and one symlink per applet, sh, sleep, echo, ...);
// with -critest also the images cri-tools' critest names (critest.go).
//
// Once every image is pushed it writes -state (atomically: temp file and
// rename), a JSON object with the address and each image's manifest
// digest, and prints the same to stdout. With -exit-on-eof it exits when
// its stdin reaches EOF, so a test that holds the write end of a pipe
// never leaves it behind.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

// state is what -state holds once the images are served.
type state struct {
	Addr   string            `json:"addr"`   // host:port of the registry
	Images map[string]string `json:"images"` // "repo:tag" → manifest digest
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve the registry on (loopback only)")
	toybox := flag.String("toybox", "", "path of the toybox binary the images are made of (required)")
	statePath := flag.String("state", "", "write the address and image digests here as JSON once serving")
	exitOnEOF := flag.Bool("exit-on-eof", false, "exit when stdin reaches EOF")
	verbose := flag.Bool("v", false, "log every registry request to stderr")
	critest := flag.Bool("critest", false, "also serve the images cri-tools' critest names (critest.go)")
	flag.Parse()
	if *toybox == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: testimages -toybox PATH [-listen ADDR] [-state FILE] [-exit-on-eof] [-v]")
		os.Exit(2)
	}
	if err := run(*listen, *toybox, *statePath, *exitOnEOF, *verbose, *critest); err != nil {
		fmt.Fprintln(os.Stderr, "testimages:", err)
		os.Exit(1)
	}
}

func run(listen, toybox, statePath string, exitOnEOF, verbose, critest bool) error {
	imgs, err := buildImages(toybox, critest)
	if err != nil {
		return err
	}
	logger := log.New(io.Discard, "", 0)
	if verbose {
		logger = log.New(os.Stderr, "registry: ", log.LstdFlags)
	}
	srv, err := serve(listen, logger)
	if err != nil {
		return err
	}
	defer srv.Close()
	st := state{Addr: srv.Addr, Images: map[string]string{}}
	for _, im := range imgs {
		digest, err := push(srv.Addr, im)
		if err != nil {
			return err
		}
		st.Images[im.Ref] = digest
	}
	out, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if statePath != "" {
		if err := writeAtomic(statePath, append(out, '\n')); err != nil {
			return err
		}
	}
	fmt.Println(string(out))

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	eof := make(chan struct{})
	if exitOnEOF {
		go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	}
	select {
	case <-stop:
	case <-eof:
	case err := <-srv.Err:
		return err
	}
	return nil
}

// server is the registry listening on loopback.
type server struct {
	Addr string
	Err  <-chan error // the serve loop's error, if it stops on its own
	srv  *http.Server
}

func (s *server) Close() { _ = s.srv.Close() }

// serve starts an in-memory registry on listen, which must be a loopback
// address: these images are for this machine's tests only.
func serve(listen string, logger *log.Logger) (*server, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("-listen %s: not a loopback address", listen)
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: newRegistry(logger)}
	errc := make(chan error, 1)
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	return &server{Addr: l.Addr().String(), Err: errc, srv: srv}, nil
}

// writeAtomic writes data to path through a temp file in the same dir.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".testimages-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
