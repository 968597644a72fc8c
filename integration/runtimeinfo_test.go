//go:build integration

package integration

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
)

// runtimeInfoCall is the answer to one RuntimeInfo request: the client's
// decoded view, the raw RuntimeInfo of the introspection service, and the
// error, if any.
type runtimeInfoCall struct {
	Info *client.RuntimeInfo
	Raw  *types.RuntimeInfo
	Err  error
}

// askRuntimeInfo asks the daemon for runtime's info with the Go client
// (client.RuntimeInfo) and, for the raw protobuf, the introspection
// service's PluginInfo of the task plugin: what `-info` printed.
func askRuntimeInfo(t testing.TB, d *Daemon, runtime string, opts *options.Options) runtimeInfoCall {
	t.Helper()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), d.NS), 30*time.Second)
	defer cancel()
	c, err := client.New(d.Address, client.WithDefaultNamespace(d.NS))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ropts any
	req := &types.RuntimeRequest{RuntimePath: runtime}
	if opts != nil {
		ropts = opts
		if req.Options, err = typeurl.MarshalAnyToProto(opts); err != nil {
			t.Fatal(err)
		}
	}
	var call runtimeInfoCall
	call.Info, call.Err = c.RuntimeInfo(ctx, runtime, ropts)
	resp, err := c.IntrospectionService().PluginInfo(ctx, string(plugins.RuntimePluginV2), "task", req)
	if (err == nil) != (call.Err == nil) {
		t.Fatalf("RuntimeInfo error %v, but PluginInfo error %v", call.Err, err)
	}
	if err == nil {
		call.Raw = &types.RuntimeInfo{}
		if err := typeurl.UnmarshalTo(resp.Extra, call.Raw); err != nil {
			t.Fatalf("PluginInfo extra: %v", err)
		}
	}
	return call
}

// TestRuntimeInfo asks the daemon for runtime info (the task plugin's
// PluginInfo, which runs `<shim> -info`), for the runc shim without and
// with runtime options, and for runtimes that cannot answer. The answers
// must be what the shim says and, when stock containerd is available, the
// same as stock's for the same calls.
func TestRuntimeInfo(t *testing.T) {
	t.Parallel()
	d := newDaemon(t)
	var stock *Daemon
	if _, err := os.Stat(stockBinary()); err == nil && !isStock(d.bin) {
		stock = newDaemon(t, withBinary(stockBinary()))
	} else {
		t.Logf("no comparison with stock: STOCK_DAEMON %s missing or the daemon under test", stockBinary())
	}
	// A shim whose -info fails (the fake shim answers only start/delete).
	failing := d.installFakeShim(fakeStartFail)

	for _, tc := range []struct {
		name    string
		runtime string
		opts    *options.Options
		wantErr []string // substrings of the error; none: must succeed
	}{
		{name: "runc", runtime: "io.containerd.runc.v2"},
		{name: "runc with options", runtime: "io.containerd.runc.v2", opts: &options.Options{BinaryName: bin("runc"), Root: d.RuncRoot}},
		{name: "runc shim by path", runtime: bin("containerd-shim-runc-v2")},
		{name: "unknown runtime", runtime: "io.containerd.nope.v1", wantErr: []string{"containerd-shim-nope-v1", "not installed"}},
		{name: "missing path", runtime: "/nonexistent/containerd-shim-missing-v2", wantErr: []string{"/nonexistent/containerd-shim-missing-v2", "no such file or directory"}},
		{name: "info fails", runtime: failing, wantErr: []string{failing, "-info", "exit status 1", "unsupported action"}},
	} {
		got := askRuntimeInfo(t, d, tc.runtime, tc.opts)
		if len(tc.wantErr) > 0 {
			if got.Err == nil {
				t.Errorf("%s: runtime info of %s: %+v, want an error", tc.name, tc.runtime, got.Info)
				continue
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(got.Err.Error(), want) {
					t.Errorf("%s: error %q does not mention %q", tc.name, got.Err, want)
				}
			}
		} else {
			checkRuncInfo(t, tc.name, got, tc.opts)
		}
		if stock == nil {
			continue
		}
		want := askRuntimeInfo(t, stock, tc.runtime, tc.opts)
		switch {
		case (got.Err == nil) != (want.Err == nil):
			t.Errorf("%s: error %v, stock's %v", tc.name, got.Err, want.Err)
		case got.Err != nil && got.Err.Error() != want.Err.Error():
			t.Errorf("%s: error differs from stock's:\n ours:  %s\n stock: %s", tc.name, got.Err, want.Err)
		case got.Err == nil && !proto.Equal(got.Raw, want.Raw):
			t.Errorf("%s: runtime info differs from stock's:\n ours:  %v\n stock: %v", tc.name, got.Raw, want.Raw)
		default:
			if got.Err != nil {
				t.Logf("%s: %s (as stock)", tc.name, got.Err)
			}
		}
	}
	assertNoLeaks(t, d)
	if stock != nil {
		assertNoLeaks(t, stock)
	}
}

// checkRuncInfo checks the runc shim's answer: its name and version, the
// options echoed back, and runc's features.
func checkRuncInfo(t *testing.T, name string, got runtimeInfoCall, opts *options.Options) {
	t.Helper()
	if got.Err != nil {
		t.Errorf("%s: %v", name, got.Err)
		return
	}
	info := got.Info
	if info.Name != "io.containerd.runc.v2" || info.Version.Version != "v2.4.2" {
		t.Errorf("%s: name %q version %+v, want io.containerd.runc.v2 v2.4.2", name, info.Name, info.Version)
	}
	if opts == nil {
		if info.Options != nil {
			t.Errorf("%s: options %+v returned for a request without options", name, info.Options)
		}
	} else if o, ok := info.Options.(*options.Options); !ok || o.BinaryName != opts.BinaryName || o.Root != opts.Root {
		t.Errorf("%s: options %T %+v, want the request's %+v echoed", name, info.Options, info.Options, opts)
	}
	f, ok := info.Features.(*features.Features)
	if !ok || f.OCIVersionMax == "" || f.Linux == nil {
		t.Errorf("%s: features %T %+v, want runc's `runc features`", name, info.Features, info.Features)
	}
}
