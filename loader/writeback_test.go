package loader

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/ttrpc"

	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/shimkeeper/shimkeeper/internal/testshim"
	"github.com/shimkeeper/shimkeeper/layout"
	"github.com/shimkeeper/shimkeeper/manager"
)

// v2OnlyShim serves task API v2 only, as a 1.x-era shim does: a v3 call is
// answered "service not found". Only Connect and State are ever called;
// the embedded nil interface is never reached.
type v2OnlyShim struct {
	taskv2.TTRPCTaskService
	id string
}

func (s *v2OnlyShim) Connect(context.Context, *taskv2.ConnectRequest) (*taskv2.ConnectResponse, error) {
	return &taskv2.ConnectResponse{ShimPid: 1, TaskPid: 42}, nil
}

func (s *v2OnlyShim) State(_ context.Context, r *taskv2.StateRequest) (*taskv2.StateResponse, error) {
	return &taskv2.StateResponse{ID: r.ID, Pid: 42, Status: tasktypes.Status_RUNNING}, nil
}

func startV2Shim(t *testing.T, socket, id string) {
	t.Helper()
	testshim.Serve(t, testshim.Listen(t, socket), func(s *ttrpc.Server) { taskv2.RegisterTTRPCTaskService(s, &v2OnlyShim{id: id}) })
}

// Adopting a shim records what it really speaks in bootstrap.json: the
// task API version after a v3→v2 fallback, and the JSON form for a shim
// found through a legacy address file, so the next start does not repeat
// the failed probe or the migration.
func TestRunWritesBackNegotiatedBootstrap(t *testing.T) {
	sock := testshim.SocketDir(t)
	f := newFixture(t)
	binary, _ := writeShimScript(t, f.outside)
	socketDir := filepath.Join(sock, "s")
	if err := os.Mkdir(socketDir, 0o700); err != nil {
		t.Fatal(err)
	}
	env := newFakeEnv()
	m := manager.New(manager.Config{
		Address: "unix://" + filepath.Join(sock, "d.sock"), SocketDir: socketDir,
		Containers: &env.containers, Sandboxes: &env.sandboxes,
		Timeouts: manager.Timeouts{Start: 5 * time.Second, Load: 5 * time.Second, Cleanup: 5 * time.Second, Shutdown: 5 * time.Second},
	})
	addr := func(id string) string { return "unix://" + filepath.Join(socketDir, id) }

	// Says v3 in bootstrap.json, speaks v2.
	f.bundle("default", "old", map[string]string{
		"bootstrap.json":   `file:{"version":3,"address":"` + addr("old") + `","protocol":"ttrpc"}`,
		"shim-binary-path": "file:" + binary,
	})
	startV2Shim(t, filepath.Join(socketDir, "old"), "old")
	// A 1.x bundle: only an address file.
	f.bundle("default", "legacy", map[string]string{
		"address":          "file:" + addr("legacy"),
		"shim-binary-path": "file:" + binary,
	})
	startV2Shim(t, filepath.Join(socketDir, "legacy"), "legacy")

	rec := Run(context.Background(), m, Options{StateDir: f.state, RootDir: f.root, Concurrency: 2, ProbeTimeout: 2 * time.Second})
	rec.Wait()
	nsctx := namespaces.WithNamespace(context.Background(), "default")
	for _, id := range []string{"old", "legacy"} {
		sh, err := m.Get(nsctx, id)
		if err != nil {
			t.Fatalf("%s not adopted: %v; report %+v", id, err, rec.Report().Entries)
		}
		t.Cleanup(sh.Abandon)
		if sh.Version() != 2 {
			t.Errorf("%s: speaks task API v%d, want v2", id, sh.Version())
		}
		data, err := os.ReadFile(filepath.Join(f.state, "default", id, layout.FileBootstrap))
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		var got struct {
			Version  int    `json:"version"`
			Address  string `json:"address"`
			Protocol string `json:"protocol"`
		}
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatalf("%s: bootstrap.json %q is not JSON: %v", id, data, err)
		}
		if got.Version != 2 || got.Address != addr(id) || got.Protocol != "ttrpc" {
			t.Errorf("%s: bootstrap.json %s, want version 2, address %s, ttrpc", id, data, addr(id))
		}
	}
}
