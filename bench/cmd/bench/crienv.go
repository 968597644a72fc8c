package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
)

// The CRI cases' environment, as integration/cri_harness_test.go sets it
// up for the CRI tests: the CRI plugins enabled, the test images
// (bin/testimages: a pause and a toybox image) served from an in-memory
// registry on loopback that only the hosts.toml under the registry
// config_path names, the pause image as pinned_images.sandbox, and a CNI
// bridge network of the bench's own (no address on the bridge, no route,
// no masquerading). Everything is under <tmp>/cri, except the bridge
// device and libcni's result cache (/var/lib/cni/results, which containerd
// has no setting for), both removed by teardown.

const (
	// criNamespace is the containerd namespace CRI keeps everything in.
	criNamespace = "k8s.io"
	// criRegistryHost names the images; it resolves nowhere (.test is
	// reserved), so only the hosts.toml sends it to our registry.
	criRegistryHost = "registry.shimkeeper.test"
	criPauseImage   = criRegistryHost + "/pause:3.10" // tools/testimages PauseRef
	criToyboxImage  = criRegistryHost + "/toybox:1"   // tools/testimages ToyboxRef
	// criSubnet is the pods' range: a /24 holds the 100 pods of cri100.
	criSubnet = "10.247.14.0/24"
	// hostCNIResults is libcni's cache of each attachment's result
	// (<network>-<sandbox id>-<ifname>).
	hostCNIResults = "/var/lib/cni/results"

	registryStartLimit = 30 * time.Second
)

// criEnv is one CRI case's registry, CNI network and dirs.
type criEnv struct {
	dir      string // <tmp>/cri
	hostsDir string // the registry config_path (certs.d layout)
	cniConf  string
	ipamDir  string // host-local dataDir
	logDir   string // pods' log_directory parent
	bridge   string // unique per bench run, ≤ 15 characters
	network  string // the CNI network name, unique per bench run
	registry string // host:port of the registry

	reg *crihost.Registry
}

// newCRIEnv lays out the dirs, the CNI network config and the hosts.toml,
// and starts the registry.
func (b *bench) newCRIEnv() (*criEnv, error) {
	for _, n := range []string{"testimages", "cni/bridge", "cni/loopback", "cni/host-local", "cni/portmap"} {
		if _, err := os.Stat(filepath.Join(b.o.bin, n)); err != nil {
			return nil, fmt.Errorf("%s missing (run make build): %w", n, err)
		}
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	c := &criEnv{dir: filepath.Join(b.tmp, "cri")}
	c.hostsDir = filepath.Join(c.dir, "certs.d")
	c.cniConf = filepath.Join(c.dir, "net.d")
	c.ipamDir = filepath.Join(c.dir, "ipam")
	c.logDir = filepath.Join(c.dir, "logs")
	c.bridge = "skbb" + hex.EncodeToString(suffix)
	c.network = "skbench-" + hex.EncodeToString(suffix)
	for _, d := range []string{c.hostsDir, c.cniConf, c.ipamDir, c.logDir, filepath.Join(c.dir, "cdi")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	// bridge with host-local IPAM, then portmap, as containerd's example
	// conflist (and the CRI tests); CRI adds loopback itself.
	conflist, err := crihost.Conflist(c.network, c.bridge, criSubnet, c.ipamDir)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(c.cniConf, "10-skbench.conflist"), conflist, 0o644); err != nil {
		return nil, err
	}
	if err := c.startRegistry(b); err != nil {
		return c, err
	}
	hostDir := filepath.Join(c.hostsDir, criRegistryHost)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		return c, err
	}
	// Plain HTTP and no TLS keys: with skip_verify set, containerd tries
	// HTTPS first.
	hosts := crihost.HostsTOML(c.registry)
	return c, os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(hosts), 0o644)
}

// startRegistry starts bin/testimages and waits until it serves every
// image.
func (c *criEnv) startRegistry(b *bench) error {
	r, err := crihost.StartRegistry(filepath.Join(b.o.bin, "testimages"), []string{"-toybox", filepath.Join(b.o.bin, "toybox")},
		filepath.Join(c.dir, "registry.json"), filepath.Join(b.logDir, "registry.log"), registryStartLimit,
		strings.TrimPrefix(criPauseImage, criRegistryHost+"/"), strings.TrimPrefix(criToyboxImage, criRegistryHost+"/"))
	if err != nil {
		return err
	}
	c.reg, c.registry = r, r.Addr
	return nil
}

// config is the CRI part of config.toml: the CRI tests' settings, with
// the bench's runc wrapper and runc root.
func (c *criEnv) config(b *bench) string {
	return crihost.Config{
		PauseImage: criPauseImage,
		HostsDir:   c.hostsDir,
		CDIDir:     filepath.Join(c.dir, "cdi"),
		CNIBinDir:  filepath.Join(b.o.bin, "cni"),
		CNIConfDir: c.cniConf,
		Runtimes:   []crihost.Runtime{{Name: "runc", BinaryName: filepath.Join(b.tmp, "rbin", "runc"), Root: b.runcRoot()}},
	}.TOML()
}

// teardown, once the pods' processes are gone and their netns unmounted,
// stops the registry, deletes the bridge and removes the libcni cache
// entries of the bench's network.
func (c *criEnv) teardown() []error {
	var errs []error
	c.reg.Stop()
	if c.bridge != "" && exists(filepath.Join("/sys/class/net", c.bridge)) {
		if err := crihost.DeleteBridge(c.bridge); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range c.cniCache() {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errs
}

// leaks lists what teardown should have removed and did not.
func (c *criEnv) leaks() []string {
	var out []string
	if c.bridge != "" && exists(filepath.Join("/sys/class/net", c.bridge)) {
		out = append(out, "bridge "+c.bridge)
	}
	for _, p := range c.cniCache() {
		out = append(out, "CNI result cache "+p)
	}
	return out
}

// cniCache lists libcni's cached results of the bench's network.
func (c *criEnv) cniCache() []string {
	ents, _ := os.ReadDir(hostCNIResults)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), c.network+"-") {
			out = append(out, filepath.Join(hostCNIResults, e.Name()))
		}
	}
	return out
}

// bridgePorts lists the interfaces (the pods' veths) on the bridge.
func (c *criEnv) bridgePorts() []string {
	ents, _ := os.ReadDir(filepath.Join("/sys/class/net", c.bridge, "brif"))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
