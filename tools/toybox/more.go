package main

// Applets that cri-tools' critest runs in its containers (tools/critest),
// each with only the options critest uses, printing what busybox prints
// where critest compares it.

import (
	"bufio"
	"encoding/binary"
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
	"unsafe"
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

// ipcs -m lists the System V shared memory segments, as util-linux does.
func ipcs(st stdio, args []string) int {
	b, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		fmt.Fprintln(st.Stderr, "ipcs:", err)
		return 1
	}
	fmt.Fprintf(st.Stdout, "\n------ Shared Memory Segments --------\n%-10s %-10s %-10s %-10s %-10s %-10s\n",
		"key", "shmid", "owner", "perms", "bytes", "nattch")
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, l := range lines[1:] { // key shmid perms size cpid lpid nattch uid ...
		f := strings.Fields(l)
		if len(f) < 8 {
			continue
		}
		key, _ := strconv.ParseInt(f[0], 10, 64)
		uid, _ := strconv.Atoi(f[7])
		owner := lookupName("/etc/passwd", uid)
		if owner == "" {
			owner = f[7]
		}
		fmt.Fprintf(st.Stdout, "0x%08x %-10s %-10s %-10s %-10s %-10s\n", uint32(key), f[1], owner, f[2], f[3], f[6])
	}
	fmt.Fprintln(st.Stdout)
	return 0
}

// netstat -ln lists the listening TCP sockets and the UDP ones from
// /proc/net.
func netstat(st stdio, args []string) int {
	fmt.Fprintln(st.Stdout, "Active Internet connections (only servers)")
	fmt.Fprintf(st.Stdout, "%-5s %-6s %-6s %-23s %-23s %s\n", "Proto", "Recv-Q", "Send-Q", "Local Address", "Foreign Address", "State")
	for _, p := range []string{"tcp", "tcp6", "udp", "udp6"} {
		b, err := os.ReadFile("/proc/net/" + p)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		for _, l := range lines[1:] { // sl local_address rem_address st ...
			f := strings.Fields(l)
			if len(f) < 4 || (strings.HasPrefix(p, "tcp") && f[3] != "0A") {
				continue
			}
			state := ""
			if strings.HasPrefix(p, "tcp") {
				state = "LISTEN"
			}
			fmt.Fprintf(st.Stdout, "%-5s %-6d %-6d %-23s %-23s %s\n", p, 0, 0, procAddr(f[1]), procAddr(f[2]), state)
		}
	}
	return 0
}

// procAddr turns /proc/net's HEXIP:HEXPORT (the address in host byte
// order, 32-bit words) into ip:port.
func procAddr(s string) string {
	h, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil {
		return s
	}
	raw := make([]byte, len(h)/2)
	for i := range raw {
		v, _ := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		raw[i] = byte(v)
	}
	ip := make([]byte, len(raw))
	for i := 0; i+4 <= len(raw); i += 4 { // each word is little-endian
		binary.BigEndian.PutUint32(ip[i:], binary.LittleEndian.Uint32(raw[i:]))
	}
	if len(ip) == 4 {
		return fmt.Sprintf("%d.%d.%d.%d:%d", ip[0], ip[1], ip[2], ip[3], port)
	}
	allZero := true
	for _, c := range ip {
		allZero = allZero && c == 0
	}
	if allZero {
		return fmt.Sprintf(":::%d", port)
	}
	var groups []string
	for i := 0; i < len(ip); i += 2 {
		groups = append(groups, strconv.FormatUint(uint64(ip[i])<<8|uint64(ip[i+1]), 16))
	}
	return fmt.Sprintf("%s:%d", strings.Join(groups, ":"), port)
}

// brctl addbr NAME creates a bridge (it needs CAP_NET_ADMIN).
func brctl(st stdio, args []string) int {
	if len(args) != 2 || args[0] != "addbr" {
		fmt.Fprintln(st.Stderr, "usage: brctl addbr NAME")
		return 2
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		fmt.Fprintln(st.Stderr, "brctl:", err)
		return 1
	}
	defer syscall.Close(fd)
	name, err := syscall.BytePtrFromString(args[1])
	if err != nil {
		fmt.Fprintln(st.Stderr, "brctl:", err)
		return 1
	}
	const siocbraddbr = 0x89a0
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), siocbraddbr, uintptr(unsafe.Pointer(name))); errno != 0 {
		fmt.Fprintf(st.Stderr, "brctl: bridge %s: %v\n", args[1], errno)
		return 1
	}
	return 0
}

// mount --bind SRC DST.
func mount(st stdio, args []string) int {
	if len(args) != 3 || (args[0] != "--bind" && args[0] != "-o" && args[0] != "bind") {
		fmt.Fprintln(st.Stderr, "usage: mount --bind SRC DST")
		return 2
	}
	if err := syscall.Mount(args[1], args[2], "", syscall.MS_BIND, ""); err != nil {
		fmt.Fprintf(st.Stderr, "mount: mounting %s on %s failed: %v\n", args[1], args[2], err)
		return 1
	}
	return 0
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

// ping [-c N] HOST sends ICMP echo requests over a raw socket, once a
// second until told to stop or N are answered. Without CAP_NET_RAW the
// socket is refused, as busybox says.
func ping(st stdio, args []string) int {
	count := -1
	if len(args) == 3 && args[0] == "-c" {
		count, _ = strconv.Atoi(args[1])
		args = args[2:]
	}
	if len(args) != 1 {
		fmt.Fprintln(st.Stderr, "usage: ping [-c N] IPV4ADDR")
		return 2
	}
	var addr [4]byte
	parts := strings.Split(args[0], ".")
	for i := 0; i < 4 && len(parts) == 4; i++ {
		v, err := strconv.Atoi(parts[i])
		if err != nil || v < 0 || v > 255 {
			parts = nil
			break
		}
		addr[i] = byte(v)
	}
	if len(parts) != 4 {
		fmt.Fprintf(st.Stderr, "ping: bad address '%s'\n", args[0])
		return 1
	}
	fmt.Fprintf(st.Stdout, "PING %s (%s): 56 data bytes\n", args[0], args[0])
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_ICMP)
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		fmt.Fprintln(st.Stderr, "ping: permission denied (are you root?)")
		return 1
	}
	if err != nil {
		fmt.Fprintln(st.Stderr, "ping:", err)
		return 1
	}
	defer syscall.Close(fd)
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &syscall.Timeval{Sec: 1})
	sig, stop := stopSignals()
	defer stop()
	to := &syscall.SockaddrInet4{Addr: addr}
	received := 0
	for seq := 0; count < 0 || seq < count; seq++ {
		pkt := make([]byte, 64)
		pkt[0] = 8 // echo request
		binary.BigEndian.PutUint16(pkt[4:], uint16(os.Getpid()))
		binary.BigEndian.PutUint16(pkt[6:], uint16(seq))
		binary.BigEndian.PutUint16(pkt[2:], icmpChecksum(pkt))
		sent := time.Now()
		if err := syscall.Sendto(fd, pkt, 0, to); err != nil {
			fmt.Fprintln(st.Stderr, "ping: sendto:", err)
			return 1
		}
		// A raw socket gets every ICMP message, our own requests to
		// loopback too: wait for the echo reply (type 0) of this one.
		reply := make([]byte, 1500)
		for time.Since(sent) < time.Second {
			n, _, err := syscall.Recvfrom(fd, reply, 0)
			if err != nil {
				break
			}
			if n >= 28 && reply[20] == 0 && binary.BigEndian.Uint16(reply[26:]) == uint16(seq) {
				received++
				fmt.Fprintf(st.Stdout, "%d bytes from %s: seq=%d time=%.3f ms\n", n-20, args[0], seq,
					float64(time.Since(sent).Microseconds())/1000)
				break
			}
		}
		select {
		case <-sig:
			count = seq + 1
		case <-time.After(time.Until(sent.Add(time.Second))):
		}
	}
	if received == 0 {
		return 1
	}
	return 0
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
