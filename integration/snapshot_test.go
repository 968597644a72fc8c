//go:build integration

package integration

import (
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shimkeeper/shimkeeper/internal/crihost"
)

// mountTypes returns the filesystem types mounted exactly at path, from
// /proc/self/mountinfo (the test shares the shims' mount namespace), in
// mount order.
func mountTypes(t testing.TB, path string) []string {
	t.Helper()
	mounts, err := crihost.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, m := range mounts {
		if m.Point == path {
			types = append(types, m.FSType)
		}
	}
	return types
}

// imageRun is a container run from an imported image with the overlayfs
// snapshotter.
type imageRun struct {
	Image  string
	ID     string
	Marker string // content of /etc/sk-image in the image
	Task   task
	Rootfs string // <bundle>/rootfs, where the shim mounts the snapshot
}

// runFromImage builds an OCI image archive from the test rootfs (plus a
// marker file), imports it with ctr (unpacked into overlayfs), and runs a
// detached sleep from it: RUNNING, its rootfs an overlay mount on the
// bundle's rootfs dir, and exec sees the image's files.
func runFromImage(t *testing.T, d *Daemon, id string) imageRun {
	t.Helper()
	ir := imageRun{Image: "docker.io/shimkeeper/toybox:" + randomHex(4), ID: id, Marker: "image-" + randomHex(8)}
	archive := filepath.Join(d.Dir, "image.tar")
	buildOCIImage(t, d.Rootfs, map[string]string{"etc/sk-image": ir.Marker}, ir.Image, archive)
	d.mustCtr("images", "import", "--platform", "linux/"+goruntime.GOARCH, "--snapshotter", "overlayfs", archive)
	if images := strings.Fields(d.mustCtr("images", "ls", "-q")); !equalStrings(images, []string{ir.Image}) {
		t.Fatalf("images after import: %q, want [%s]", images, ir.Image)
	}
	// Unpacked: the layer is a committed overlayfs snapshot.
	if snaps := d.mustCtr("snapshots", "--snapshotter", "overlayfs", "ls"); !strings.Contains(snaps, "Committed") {
		t.Fatalf("no committed overlayfs snapshot after the import:\n%s", snaps)
	}

	r := d.ctr("run", "-d", "--snapshotter", "overlayfs", "--runc-root", d.RuncRoot, "--fifo-dir", d.FIFODir,
		ir.Image, id, "/bin/sleep", "3600")
	if r.ExitCode != 0 {
		t.Fatalf("%s\n%s", r, d.logTail(30))
	}
	ir.Task = d.waitTask(d.NS, id, "RUNNING")
	waitCatchesSIGTERM(t, ir.Task.PID)
	ir.Rootfs = filepath.Join(recBundle(d, d.NS, id), "rootfs")
	if got := mountTypes(t, ir.Rootfs); !equalStrings(got, []string{"overlay"}) {
		t.Fatalf("mounts on %s: %q, want one overlay (the snapshot)\n%s", ir.Rootfs, got, d.logTail(20))
	}
	ir.assertExec(t, d, "e1")
	return ir
}

// assertExec runs `cat /etc/sk-image` in the container.
func (ir imageRun) assertExec(t *testing.T, d *Daemon, execID string) {
	t.Helper()
	if r := d.execIn(d.NS, ir.ID, execID, "/bin/cat", "/etc/sk-image"); r.ExitCode != 0 || r.Stdout != ir.Marker {
		t.Fatalf("exec cat /etc/sk-image: want %q\n%s", ir.Marker, r)
	}
}

// removeImage removes the container's image; with --sync the snapshots
// it held are collected before ctr returns, and none may remain.
func (ir imageRun) removeImage(t *testing.T, d *Daemon) {
	t.Helper()
	d.mustCtr("images", "rm", "--sync", ir.Image)
	if images := strings.Fields(d.mustCtr("images", "ls", "-q")); len(images) > 0 {
		t.Errorf("images left: %q", images)
	}
	// Only the KEY PARENT KIND header may be left.
	if snaps := d.mustCtr("snapshots", "--snapshotter", "overlayfs", "ls"); len(strings.Split(strings.TrimSpace(snaps), "\n")) != 1 {
		t.Errorf("overlayfs snapshots left after ctr images rm --sync:\n%s", snaps)
	}
}

// TestSnapshotterRootfs runs containers from an imported image with the
// overlayfs snapshotter, so the task gets rootfs mounts and the shim
// mounts them on the bundle: the mount must survive a daemon restart with
// the container, go away with a task delete, and be unmounted by the
// recovery of a shim that died while the daemon was down.
func TestSnapshotterRootfs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		stop func(*Daemon)
	}{
		{"SIGTERM", (*Daemon).Stop},
		{"SIGKILL", (*Daemon).Kill},
	} {
		t.Run("restart "+tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDaemon(t)
			ir := runFromImage(t, d, "img")
			shim := recShimPID(t, d, d.NS, ir.ID)

			tc.stop(d)
			since := time.Now()
			d.Start()
			if !isStock(d.bin) {
				recAssertReport(t, d, since, map[string]recWant{
					d.NS + "/" + ir.ID: {"adopt", "done", "shim alive, task live"},
				}, []string{})
			}
			if got := d.tasks(d.NS)[ir.ID]; got != ir.Task {
				t.Fatalf("after restart: task %+v, want %+v", got, ir.Task)
			}
			if got := recShimPID(t, d, d.NS, ir.ID); got != shim {
				t.Errorf("after restart: shim pid %d, want %d", got, shim)
			}
			if got := mountTypes(t, ir.Rootfs); !equalStrings(got, []string{"overlay"}) {
				t.Fatalf("after restart: mounts on %s: %q, want the overlay still there", ir.Rootfs, got)
			}
			ir.assertExec(t, d, "e2")

			d.removeContainer(d.NS, ir.ID)
			if got := mountTypes(t, ir.Rootfs); len(got) > 0 {
				t.Errorf("after task delete: %q still mounted on %s", got, ir.Rootfs)
			}
			recWaitPathGone(t, d, filepath.Dir(ir.Rootfs))
			recWaitPathGone(t, d, recWorkDir(d, d.NS, ir.ID))
			ir.removeImage(t, d)
			assertNoLeaks(t, d)
		})
	}

	// The shim and the container die while the daemon is down: recovery
	// must run `shim delete`, which unmounts the rootfs, and remove the
	// bundle and work dir.
	t.Run("dead shim", func(t *testing.T) {
		t.Parallel()
		d := newDaemon(t)
		ir := runFromImage(t, d, "img")
		shim := recShimPID(t, d, d.NS, ir.ID)

		d.Stop()
		recKill(t, shim, syscall.SIGKILL)
		recWaitGone(t, "SIGKILLed shim", shim)
		recKill(t, ir.Task.PID, syscall.SIGKILL)
		recWaitGone(t, "SIGKILLed container process", ir.Task.PID)
		if got := mountTypes(t, ir.Rootfs); !equalStrings(got, []string{"overlay"}) {
			t.Fatalf("with the shim dead: mounts on %s: %q, want the overlay left behind", ir.Rootfs, got)
		}

		since := time.Now()
		d.Start()
		if !isStock(d.bin) {
			recAssertReport(t, d, since, map[string]recWant{
				d.NS + "/" + ir.ID: {"cleanup-dead", "done", "shim gone"},
			}, []string{})
		}
		recWaitPathGone(t, d, filepath.Dir(ir.Rootfs))
		recWaitPathGone(t, d, recWorkDir(d, d.NS, ir.ID))
		if got := mountTypes(t, ir.Rootfs); len(got) > 0 {
			t.Errorf("after recovery: %q still mounted on %s", got, ir.Rootfs)
		}
		if tk, ok := d.tasks(d.NS)[ir.ID]; ok {
			t.Errorf("after recovery: task of the dead shim listed: %+v", tk)
		}
		d.mustCtr("container", "rm", ir.ID)
		ir.removeImage(t, d)
		assertNoLeaks(t, d)
	})
}
