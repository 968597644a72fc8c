package main

// Applets that cri-tools' critest runs in its containers (tools/critest),
// each with only the options critest uses, printing what busybox prints
// where critest compares it.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// critestApplets join the applets of main.go (its init).
var critestApplets = map[string]applet{
	"[": bracket, "test": test,
	"brctl": brctl, "dd": dd, "grep": grep, "ipcs": ipcs, "mount": mount, "netstat": netstat,
	"pgrep": pgrep, "pidof": pidof, "ping": ping, "seq": seq,
	"sync": func(stdio, []string) int { syscall.Sync(); return 0 },
}

// errText is an error as busybox prints it: "PATH: Strerror", e.g.
// "test.go: Read-only file system".
func errText(err error) string {
	var pe *os.PathError
	var errno syscall.Errno
	if errors.As(err, &pe) && errors.As(pe.Err, &errno) {
		msg := errno.Error()
		return pe.Path + ": " + strings.ToUpper(msg[:1]) + msg[1:]
	}
	return err.Error()
}

// bracket is [ EXPRESSION ]: test with a closing ].
func bracket(st stdio, args []string) int {
	if len(args) == 0 || args[len(args)-1] != "]" {
		fmt.Fprintln(st.Stderr, "[: missing ]")
		return 2
	}
	return test(st, args[:len(args)-1])
}

// test: the file tests, string and integer comparisons, and ! that
// critest's scripts use.
func test(st stdio, args []string) int {
	ok, err := evalTest(args)
	if err != nil {
		fmt.Fprintln(st.Stderr, "test:", err)
		return 2
	}
	if ok {
		return 0
	}
	return 1
}

func evalTest(a []string) (bool, error) {
	if len(a) > 0 && a[0] == "!" {
		ok, err := evalTest(a[1:])
		return !ok, err
	}
	switch len(a) {
	case 0:
		return false, nil
	case 1:
		return a[0] != "", nil
	case 2:
		fi, err := os.Stat(a[1])
		switch a[0] {
		case "-z":
			return a[1] == "", nil
		case "-n":
			return a[1] != "", nil
		case "-e":
			return err == nil, nil
		case "-f":
			return err == nil && fi.Mode().IsRegular(), nil
		case "-d":
			return err == nil && fi.IsDir(), nil
		case "-x":
			return err == nil && syscall.Access(a[1], 1) == nil, nil
		}
	case 3:
		switch a[1] {
		case "=", "==":
			return a[0] == a[2], nil
		case "!=":
			return a[0] != a[2], nil
		}
		x, err1 := strconv.Atoi(a[0])
		y, err2 := strconv.Atoi(a[2])
		if err1 == nil && err2 == nil {
			switch a[1] {
			case "-eq":
				return x == y, nil
			case "-ne":
				return x != y, nil
			case "-lt":
				return x < y, nil
			case "-le":
				return x <= y, nil
			case "-gt":
				return x > y, nil
			case "-ge":
				return x >= y, nil
			}
		}
	}
	return false, fmt.Errorf("unsupported expression %q", strings.Join(a, " "))
}

// seq [FIRST] LAST.
func seq(st stdio, args []string) int {
	first, last := 1, 0
	var err error
	switch len(args) {
	case 1:
		last, err = strconv.Atoi(args[0])
	case 2:
		if first, err = strconv.Atoi(args[0]); err == nil {
			last, err = strconv.Atoi(args[1])
		}
	default:
		err = errors.New("usage: seq [FIRST] LAST")
	}
	if err != nil {
		fmt.Fprintln(st.Stderr, "seq:", err)
		return 1
	}
	for i := first; i <= last; i++ {
		fmt.Fprintln(st.Stdout, i)
	}
	return 0
}

// grep [-q] [-v] [-F] PATTERN [FILE...]; the pattern is a Go regexp.
func grep(st stdio, args []string) int {
	quiet, invert, fixed := false, false, false
	for len(args) > 0 && strings.HasPrefix(args[0], "-") && len(args[0]) > 1 {
		for _, c := range args[0][1:] {
			switch c {
			case 'q':
				quiet = true
			case 'v':
				invert = true
			case 'F':
				fixed = true
			case 'E':
			default:
				fmt.Fprintf(st.Stderr, "grep: unknown option -%c\n", c)
				return 2
			}
		}
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(st.Stderr, "usage: grep [-qvF] PATTERN [FILE...]")
		return 2
	}
	pat := args[0]
	if fixed {
		pat = regexp.QuoteMeta(pat)
	}
	re, err := regexp.Compile(pat)
	if err != nil {
		fmt.Fprintln(st.Stderr, "grep:", err)
		return 2
	}
	found := false
	match := func(r io.Reader) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
		for sc.Scan() {
			if re.MatchString(sc.Text()) != invert {
				found = true
				if !quiet {
					fmt.Fprintln(st.Stdout, sc.Text())
				}
			}
		}
	}
	status := 0
	if len(args) == 1 {
		match(st.Stdin)
	}
	for _, name := range args[1:] {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(st.Stderr, "grep:", errText(err))
			status = 2
			continue
		}
		match(f)
		f.Close()
	}
	if found {
		return 0
	}
	if status != 0 {
		return status
	}
	return 1
}

// procNames lists every process in our pid namespace with its comm and
// the base name of its argv[0].
func procNames() map[int][2]string {
	out := map[int][2]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		argv0, _, _ := strings.Cut(string(cmdline), "\x00")
		out[pid] = [2]string{strings.TrimSpace(string(comm)), filepath.Base(argv0)}
	}
	return out
}

// pgrep PATTERN prints the pids whose name matches, one a line, but its
// own; pidof NAME... prints the pids named exactly so, on one line.
func pgrep(st stdio, args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(st.Stderr, "usage: pgrep PATTERN")
		return 2
	}
	re, err := regexp.Compile(args[0])
	if err != nil {
		fmt.Fprintln(st.Stderr, "pgrep:", err)
		return 2
	}
	status := 1
	names := procNames()
	for _, pid := range sortedPIDs(names) {
		if n := names[pid]; pid != os.Getpid() && re.MatchString(n[0]) {
			fmt.Fprintln(st.Stdout, pid)
			status = 0
		}
	}
	return status
}

func pidof(st stdio, args []string) int {
	names := procNames()
	var pids []string
	for _, pid := range sortedPIDs(names) {
		for _, a := range args {
			if n := names[pid]; pid != os.Getpid() && (n[0] == a || n[1] == a) {
				pids = append(pids, strconv.Itoa(pid))
				break
			}
		}
	}
	if len(pids) == 0 {
		return 1
	}
	fmt.Fprintln(st.Stdout, strings.Join(pids, " "))
	return 0
}

func sortedPIDs(m map[int][2]string) []int {
	var out []int
	for pid := range m {
		out = append(out, pid)
	}
	sort.Ints(out)
	return out
}

// dd [if=FILE] [of=FILE] [bs=N[kKMG]] [count=N]: copies in blocks of bs
// bytes, every byte of each block written first (critest's OOM spec runs
// dd bs=20M in 15 MiB of memory).
func dd(st stdio, args []string) int {
	in, out := st.Stdin, st.Stdout
	bs, count := int64(512), int64(-1)
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			fmt.Fprintf(st.Stderr, "dd: bad operand %q\n", a)
			return 1
		}
		var err error
		switch k {
		case "if":
			var f *os.File
			if f, err = os.Open(v); err == nil {
				defer f.Close()
				in = f
			}
		case "of":
			var f *os.File
			if f, err = os.OpenFile(v, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644); err == nil {
				defer f.Close()
				out = f
			}
		case "bs":
			bs, err = parseSize(v)
		case "count":
			count, err = strconv.ParseInt(v, 10, 64)
		default:
			err = fmt.Errorf("unknown operand %s", k)
		}
		if err != nil {
			fmt.Fprintln(st.Stderr, "dd:", errText(err))
			return 1
		}
	}
	buf := make([]byte, bs)
	start, blocks := time.Now(), int64(0)
	for ; count < 0 || blocks < count; blocks++ {
		n, err := io.ReadFull(in, buf)
		if n > 0 {
			if _, werr := out.Write(buf[:n]); werr != nil {
				fmt.Fprintln(st.Stderr, "dd:", errText(werr))
				return 1
			}
		}
		if err != nil {
			break
		}
	}
	fmt.Fprintf(st.Stderr, "%d+0 records in\n%d+0 records out\n(%s)\n", blocks, blocks, time.Since(start).Round(time.Millisecond))
	return 0
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "k") || strings.HasSuffix(s, "K"):
		mult = 1 << 10
	case strings.HasSuffix(s, "M"):
		mult = 1 << 20
	case strings.HasSuffix(s, "G"):
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
