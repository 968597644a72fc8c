// Package crihost holds what the CRI integration tests, the CRI bench and
// the critest driver (tools/critest) need of the host itself: the CRI part
// of config.toml, the CNI conflist and hosts.toml they write, the test
// registry, whether runc may lower oom_score_adj, and undoing what they
// leave: the processes they started (from /proc, killed by PID), what is
// mounted below their dirs, the CNI bridge they made (without iproute2).
package crihost

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// HaveCapSysResource reports whether this process has CAP_SYS_RESOURCE in
// its effective set (and so may lower oom_score_adj).
func HaveCapSysResource() bool {
	const capSysResource = 24
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if h, ok := strings.CutPrefix(l, "CapEff:"); ok {
			v, err := strconv.ParseUint(strings.TrimSpace(h), 16, 64)
			return err == nil && v&(1<<capSysResource) != 0
		}
	}
	return false
}

// DeleteBridge sets the bridge down and deletes it with the bridge ioctls
// (no iproute2 needed).
func DeleteBridge(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bridge %s: get flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() &^ unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bridge %s: set down: %w", name, err)
	}
	var buf [unix.IFNAMSIZ]byte
	copy(buf[:], name)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCBRDELBR, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
		return fmt.Errorf("bridge %s: delete: %w", name, errno)
	}
	return nil
}

// Conflist is the CNI network config of the CRI tests and the bench: the
// bridge plugin with host-local IPAM over subnet (its state in ipamDir),
// then portmap, as containerd's own example conflist (a pass-through for
// pods without port mappings). CRI adds the loopback plugin itself.
func Conflist(network, bridge, subnet, ipamDir string) ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       network,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      bridge,
				"isGateway":   false,
				"ipMasq":      false,
				"hairpinMode": false,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": subnet}}},
					"dataDir": ipamDir,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}, "", "  ")
}

// HostsTOML is the hosts.toml that sends pulls of the test registry's
// host name to registry (host:port) over plain HTTP. No TLS keys at all:
// with skip_verify (or a CA) set, containerd tries HTTPS first on an
// http:// host.
func HostsTOML(registry string) string {
	return fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n",
		"http://"+registry, "http://"+registry)
}

// Runtime is one CRI runtime handler on the runc shim.
type Runtime struct {
	Name      string
	Sandboxer string // "" for CRI's default (podsandbox)
	// BinaryName and Root are runc's binary and state dir.
	BinaryName, Root string
}

// Config is what the CRI part of config.toml is made of.
type Config struct {
	PauseImage string
	HostsDir   string // registry config_path (hosts.toml dirs)
	CDIDir     string
	CNIBinDir  string
	CNIConfDir string
	// Runtimes: the first is the default.
	Runtimes []Runtime
}

// TOML is the CRI part of config.toml: no TCP streaming, overlayfs, the
// pinned pause image, the hosts.toml dirs, netns mounts under the state
// dir, the CNI dirs, and the runtimes on the runc shim. Without
// CAP_SYS_RESOURCE (some sandboxes drop it) runc cannot lower
// oom_score_adj to the -998 CRI gives the pause container, so
// restrict_oom_score_adj clamps it to ours, as for rootless containerd.
func (c Config) TOML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n[plugins.%q]\n", "io.containerd.grpc.v1.cri")
	b.WriteString("  disable_tcp_service = true\n  stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n\n")
	img := "io.containerd.cri.v1.images"
	fmt.Fprintf(&b, "[plugins.%q]\n  snapshotter = \"overlayfs\"\n", img)
	fmt.Fprintf(&b, "  [plugins.%q.pinned_images]\n    sandbox = %q\n", img, c.PauseImage)
	fmt.Fprintf(&b, "  [plugins.%q.registry]\n    config_path = %q\n\n", img, c.HostsDir)
	rt := "io.containerd.cri.v1.runtime"
	fmt.Fprintf(&b, "[plugins.%q]\n", rt)
	b.WriteString("  netns_mounts_under_state_dir = true\n")
	if !HaveCapSysResource() {
		b.WriteString("  restrict_oom_score_adj = true\n")
	}
	fmt.Fprintf(&b, "  cdi_spec_dirs = [%q]\n", c.CDIDir)
	fmt.Fprintf(&b, "  [plugins.%q.cni]\n    bin_dirs = [%q]\n    conf_dir = %q\n    max_conf_num = 1\n",
		rt, c.CNIBinDir, c.CNIConfDir)
	def := "runc"
	if len(c.Runtimes) > 0 {
		def = c.Runtimes[0].Name
	}
	fmt.Fprintf(&b, "  [plugins.%q.containerd]\n    default_runtime_name = %q\n", rt, def)
	for _, r := range c.Runtimes {
		fmt.Fprintf(&b, "    [plugins.%q.containerd.runtimes.%s]\n      runtime_type = \"io.containerd.runc.v2\"\n", rt, r.Name)
		if r.Sandboxer != "" {
			fmt.Fprintf(&b, "      sandboxer = %q\n", r.Sandboxer)
		}
		fmt.Fprintf(&b, "      [plugins.%q.containerd.runtimes.%s.options]\n", rt, r.Name)
		fmt.Fprintf(&b, "        BinaryName = %q\n        Root = %q\n        SystemdCgroup = false\n", r.BinaryName, r.Root)
	}
	return b.String()
}
