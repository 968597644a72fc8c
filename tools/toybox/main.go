// Command toybox is a tiny static multi-call binary that serves as the whole
// root filesystem of shimkeeper's test and demo containers. No image registry
// is reachable from CI, so instead of pulling busybox we build this from source
// with CGO_ENABLED=0 and lay it out with scripts/mkrootfs.sh.
//
// The applet is chosen by the base name of argv[0] (for /bin/sleep -> toybox)
// or, when that is "toybox", by the first argument ("toybox sleep 10").
//
// Signals: a process that is PID 1 of a pid namespace only receives signals it
// has a handler for, so every applet that can block for long (sleep, pause,
// cat on stdin, sh) installs handlers for SIGTERM and SIGINT. sleep exits
// 128+signo (143 for TERM, 130 for INT) like a shell-run sleep would; pause
// exits 0 because being told to stop is its normal end.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stdio is the set of streams an applet works on; the shell swaps Stdout for
// redirections.
type stdio struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

type applet func(st stdio, args []string) int

var applets map[string]applet

func init() {
	applets = map[string]applet{
		"cat":      cat,
		"echo":     echo,
		"env":      env,
		"exit":     fail,
		"fail":     fail,
		"false":    func(stdio, []string) int { return 1 },
		"hostname": hostname,
		"id":       id,
		"kill":     kill,
		"ls":       ls,
		"mkdir":    mkdir,
		"pause":    pause,
		"pwd":      pwd,
		"rm":       rm,
		"sh":       sh,
		"sleep":    sleep,
		"top":      top,
		"touch":    touch,
		"true":     func(stdio, []string) int { return 0 },
	}
	for name, a := range critestApplets {
		applets[name] = a
	}
}

// appletNames returns the sorted applet names; mkrootfs.sh links each of them.
func appletNames() []string {
	names := make([]string, 0, len(applets))
	for n := range applets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func main() {
	os.Exit(run(os.Args, stdio{os.Stdin, os.Stdout, os.Stderr}))
}

func run(argv []string, st stdio) int {
	if len(argv) == 0 {
		return usage(st.Stderr)
	}
	name := filepath.Base(argv[0])
	args := argv[1:]
	if name == "toybox" {
		if len(args) == 0 || args[0] == "--help" || args[0] == "-h" {
			return usage(st.Stderr)
		}
		if args[0] == "--list" {
			for _, n := range appletNames() {
				fmt.Fprintln(st.Stdout, n)
			}
			return 0
		}
		name, args = args[0], args[1:]
	}
	a, ok := applets[name]
	if !ok {
		fmt.Fprintf(st.Stderr, "toybox: unknown applet %q\n", name)
		return 127
	}
	return a(st, args)
}

func usage(w io.Writer) int {
	fmt.Fprintf(w, "usage: toybox APPLET [ARGS...] | toybox --list\napplets: %s\n", strings.Join(appletNames(), " "))
	return 2
}

// stopSignals returns a channel that receives SIGTERM and SIGINT and a
// function that uninstalls the handler again.
func stopSignals() (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	return ch, func() { signal.Stop(ch) }
}

func signalStatus(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return 128
}

// parseDuration accepts seconds as an integer or decimal ("10", "0.5"), a Go
// duration ("100ms"), a number with an s/m/h/d suffix, or "inf"/"infinity".
func parseDuration(s string) (time.Duration, bool, error) {
	if s == "inf" || s == "infinity" {
		return 0, true, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 {
			return 0, false, fmt.Errorf("invalid time interval %q", s)
		}
		return time.Duration(f * float64(time.Second)), false, nil
	}
	if strings.HasSuffix(s, "d") {
		if f, err := strconv.ParseFloat(strings.TrimSuffix(s, "d"), 64); err == nil && f >= 0 {
			return time.Duration(f * 24 * float64(time.Hour)), false, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, false, fmt.Errorf("invalid time interval %q", s)
	}
	return d, false, nil
}

func sleep(st stdio, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(st.Stderr, "sleep: missing operand")
		return 1
	}
	var total time.Duration
	forever := false
	for _, a := range args {
		d, inf, err := parseDuration(a)
		if err != nil {
			fmt.Fprintln(st.Stderr, "sleep:", err)
			return 1
		}
		forever = forever || inf
		total += d
	}
	sig, stop := stopSignals()
	defer stop()
	var timeout <-chan time.Time
	if !forever {
		t := time.NewTimer(total)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return 0
	case s := <-sig:
		return signalStatus(s)
	}
}

func pause(stdio, []string) int {
	sig, stop := stopSignals()
	defer stop()
	<-sig
	return 0
}

// top stands in for busybox top, the command cri-tools' critest gives most
// of its containers: it prints a line of its own pid now and then until it
// is told to stop, and exits 0 then, as pause does. Options are ignored.
func top(st stdio, _ []string) int {
	sig, stop := stopSignals()
	defer stop()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		fmt.Fprintf(st.Stdout, "top: pid %d\n", os.Getpid())
		select {
		case <-sig:
			return 0
		case <-tick.C:
		}
	}
}

func echo(st stdio, args []string) int {
	newline := true
	if len(args) > 0 && args[0] == "-n" {
		newline = false
		args = args[1:]
	}
	out := strings.Join(args, " ")
	if newline {
		out += "\n"
	}
	if _, err := st.Stdout.Write([]byte(out)); err != nil {
		fmt.Fprintln(st.Stderr, "echo:", err)
		return 1
	}
	return 0
}

func cat(st stdio, args []string) int {
	if len(args) == 0 {
		args = []string{"-"}
	}
	status := 0
	for _, a := range args {
		var r io.Reader
		if a == "-" {
			r = st.Stdin
		} else {
			f, err := os.Open(a)
			if err != nil {
				fmt.Fprintln(st.Stderr, "cat:", err)
				status = 1
				continue
			}
			defer f.Close()
			r = f
		}
		if _, err := copyInterruptible(st.Stdout, r); err != nil {
			fmt.Fprintln(st.Stderr, "cat:", err)
			status = 1
		}
	}
	return status
}

// copyInterruptible copies r to w, but returns 128+signo when TERM or INT
// arrives, so "cat" reading a never-closed stdin as PID 1 can still be stopped.
func copyInterruptible(w io.Writer, r io.Reader) (int64, error) {
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := io.Copy(w, r)
		done <- result{n, err}
	}()
	sig, stop := stopSignals()
	defer stop()
	select {
	case res := <-done:
		return res.n, res.err
	case s := <-sig:
		os.Exit(signalStatus(s))
		return 0, nil
	}
}

func fail(st stdio, args []string) int {
	if len(args) == 0 {
		return 1
	}
	n, err := strconv.Atoi(args[0])
	if err != nil {
		fmt.Fprintf(st.Stderr, "fail: invalid status %q\n", args[0])
		return 2
	}
	return n & 0xff
}

func env(st stdio, args []string) int {
	for _, kv := range os.Environ() {
		fmt.Fprintln(st.Stdout, kv)
	}
	return 0
}

func hostname(st stdio, args []string) int {
	h, err := os.Hostname()
	if err != nil {
		fmt.Fprintln(st.Stderr, "hostname:", err)
		return 1
	}
	fmt.Fprintln(st.Stdout, h)
	return 0
}

// lookupName finds the name for numeric id in an /etc/passwd- or
// /etc/group-style file, or "" if there is none.
func lookupName(file string, id int) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Split(s.Text(), ":")
		if len(fields) >= 3 && fields[2] == strconv.Itoa(id) {
			return fields[0]
		}
	}
	return ""
}

func withName(id int, file string) string {
	if n := lookupName(file, id); n != "" {
		return fmt.Sprintf("%d(%s)", id, n)
	}
	return strconv.Itoa(id)
}

// id prints uid, gid and groups; -u, -g and -G print the ids alone
// (-G: the gid, then the other groups), -n their names.
func id(st stdio, args []string) int {
	uid, gid := os.Getuid(), os.Getgid()
	groups, _ := os.Getgroups()
	var which rune
	names := false
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			fmt.Fprintln(st.Stderr, "id: users other than the caller are not supported")
			return 1
		}
		for _, c := range a[1:] {
			switch c {
			case 'u', 'g', 'G':
				which = c
			case 'n':
				names = true
			default:
				fmt.Fprintf(st.Stderr, "id: unknown option -%c\n", c)
				return 2
			}
		}
	}
	name := func(id int, file string) string {
		if n := lookupName(file, id); names && n != "" {
			return n
		}
		return strconv.Itoa(id)
	}
	switch which {
	case 'u':
		fmt.Fprintln(st.Stdout, name(uid, "/etc/passwd"))
		return 0
	case 'g':
		fmt.Fprintln(st.Stdout, name(gid, "/etc/group"))
		return 0
	case 'G':
		parts := []string{name(gid, "/etc/group")}
		for _, g := range groups {
			if g != gid {
				parts = append(parts, name(g, "/etc/group"))
			}
		}
		fmt.Fprintln(st.Stdout, strings.Join(parts, " "))
		return 0
	}
	line := fmt.Sprintf("uid=%s gid=%s", withName(uid, "/etc/passwd"), withName(gid, "/etc/group"))
	if len(groups) > 0 {
		parts := make([]string, len(groups))
		for i, g := range groups {
			parts[i] = withName(g, "/etc/group")
		}
		line += " groups=" + strings.Join(parts, ",")
	}
	fmt.Fprintln(st.Stdout, line)
	return 0
}

func ls(st stdio, args []string) int {
	long, all := false, false
	var paths []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			for _, c := range a[1:] {
				switch c {
				case 'l':
					long = true
				case 'a', 'A': // ReadDir never lists . and ..
					all = true
				default:
					fmt.Fprintf(st.Stderr, "ls: unknown option -%c\n", c)
					return 2
				}
			}
			continue
		}
		paths = append(paths, a)
	}
	if len(paths) == 0 {
		paths = []string{"."}
	}
	status := 0
	show := func(dir, name string) {
		if !long {
			fmt.Fprintln(st.Stdout, name)
			return
		}
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			fmt.Fprintln(st.Stderr, "ls:", err)
			status = 1
			return
		}
		line := fmt.Sprintf("%s %10d %s %s", fi.Mode(), fi.Size(), fi.ModTime().Format("2006-01-02 15:04"), name)
		if fi.Mode()&os.ModeSymlink != 0 {
			if t, err := os.Readlink(filepath.Join(dir, name)); err == nil {
				line += " -> " + t
			}
		}
		fmt.Fprintln(st.Stdout, line)
	}
	for i, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			fmt.Fprintln(st.Stderr, "ls:", err)
			status = 1
			continue
		}
		if !fi.IsDir() {
			show(filepath.Dir(p), filepath.Base(p))
			continue
		}
		if len(paths) > 1 {
			if i > 0 {
				fmt.Fprintln(st.Stdout)
			}
			fmt.Fprintf(st.Stdout, "%s:\n", p)
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			fmt.Fprintln(st.Stderr, "ls:", err)
			status = 1
			continue
		}
		for _, e := range entries {
			if !all && strings.HasPrefix(e.Name(), ".") {
				continue
			}
			show(p, e.Name())
		}
	}
	return status
}

func pwd(st stdio, args []string) int {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(st.Stderr, "pwd:", err)
		return 1
	}
	fmt.Fprintln(st.Stdout, wd)
	return 0
}

func mkdir(st stdio, args []string) int {
	parents := false
	status := 0
	for _, a := range args {
		if a == "-p" {
			parents = true
			continue
		}
		var err error
		if parents {
			err = os.MkdirAll(a, 0o755)
		} else {
			err = os.Mkdir(a, 0o755)
		}
		if err != nil {
			fmt.Fprintln(st.Stderr, "mkdir:", err)
			status = 1
		}
	}
	return status
}

func touch(st stdio, args []string) int {
	status := 0
	now := time.Now()
	for _, a := range args {
		f, err := os.OpenFile(a, os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			err = f.Close()
		}
		if err == nil {
			err = os.Chtimes(a, now, now)
		}
		if err != nil {
			fmt.Fprintln(st.Stderr, "touch:", errText(err))
			status = 1
		}
	}
	return status
}

func rm(st stdio, args []string) int {
	recursive, force := false, false
	status := 0
	for _, a := range args {
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			recursive = recursive || strings.ContainsAny(a, "rR")
			force = force || strings.Contains(a, "f")
			continue
		}
		var err error
		if recursive {
			err = os.RemoveAll(a)
		} else {
			err = os.Remove(a)
		}
		if err != nil && !(force && errors.Is(err, os.ErrNotExist)) {
			fmt.Fprintln(st.Stderr, "rm:", err)
			status = 1
		}
	}
	return status
}

// kill [-SIGNAL|-s SIGNAL] PID...; SIGNAL is a number or a name with or
// without the SIG prefix.
func kill(st stdio, args []string) int {
	sig := syscall.SIGTERM
	if len(args) > 0 && strings.HasPrefix(args[0], "-") {
		spec := strings.TrimPrefix(args[0], "-")
		args = args[1:]
		if spec == "s" && len(args) > 0 {
			spec, args = args[0], args[1:]
		}
		s, ok := parseSignal(spec)
		if !ok {
			fmt.Fprintf(st.Stderr, "kill: unknown signal %q\n", spec)
			return 2
		}
		sig = s
	}
	if len(args) == 0 {
		fmt.Fprintln(st.Stderr, "kill: no pid")
		return 2
	}
	status := 0
	for _, a := range args {
		pid, err := strconv.Atoi(a)
		if err == nil {
			err = syscall.Kill(pid, sig)
		}
		if err != nil {
			fmt.Fprintf(st.Stderr, "kill: %s: %v\n", a, err)
			status = 1
		}
	}
	return status
}

var signalNames = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "KILL": syscall.SIGKILL,
	"USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "TERM": syscall.SIGTERM, "STOP": syscall.SIGSTOP,
	"CONT": syscall.SIGCONT,
}

func parseSignal(s string) (syscall.Signal, bool) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n < 65 {
		return syscall.Signal(n), true
	}
	sig, ok := signalNames[strings.TrimPrefix(strings.ToUpper(s), "SIG")]
	return sig, ok
}
