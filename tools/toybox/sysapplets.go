package main

// The critest applets (more.go) that look at or change the system: IPC,
// sockets, network devices, mounts.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

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
