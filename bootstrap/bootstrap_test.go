package bootstrap

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/encoding/prototext"
	googleproto "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/containerd/containerd/v2/pkg/protobuf/proto"

	"github.com/shimkeeper/shimkeeper/internal/testshim"
	"github.com/shimkeeper/shimkeeper/layout"
)

// requireProtoEqual compares messages by value; reflect.DeepEqual is not
// sound on generated types, which carry internal state.
func requireProtoEqual(t *testing.T, want, got googleproto.Message) {
	t.Helper()
	if !googleproto.Equal(want, got) {
		t.Fatalf("unexpected message:\n  want: %s\n  got:  %s", prototext.Format(want), prototext.Format(got))
	}
}

// mountCapsExt is the extension stock's own test stores: MountCapabilities
// {types: ["erofs"]}.
func mountCapsExt() *bootapi.Extension {
	return &bootapi.Extension{Value: &anypb.Any{
		TypeUrl: "type.googleapis.com/containerd.types.MountCapabilities",
		Value:   []byte("\n\x05erofs"),
	}}
}

func TestParseStartResponse(t *testing.T) {
	v3 := &bootapi.BootstrapResult{
		Version:  3,
		Address:  "unix:///run/containerd/s/0123abcd",
		Protocol: "ttrpc",
		Metadata: map[string]string{"note": "line\n"},
	}
	v3Proto, err := proto.Marshal(v3)
	if err != nil {
		t.Fatal(err)
	}
	// The metadata value puts a newline at the very end of the encoding:
	// trimming before the protobuf decode would corrupt it.
	if v3Proto[len(v3Proto)-1] != '\n' {
		t.Fatal("test setup: the protobuf reply should end in a newline")
	}
	v3Ext := &bootapi.BootstrapResult{Version: 3, Address: "unix:///run/containerd/s/0123abcd", Protocol: "ttrpc"}
	if err := v3Ext.AddExtension(&apitypes.MountCapabilities{Types: []string{"erofs"}, Transforms: []string{"format"}}); err != nil {
		t.Fatal(err)
	}
	v3ExtProto, err := proto.Marshal(v3Ext)
	if err != nil {
		t.Fatal(err)
	}
	noAddrProto, err := proto.Marshal(&bootapi.BootstrapResult{Version: 3, Protocol: "ttrpc"})
	if err != nil {
		t.Fatal(err)
	}
	v4Proto, err := proto.Marshal(&bootapi.BootstrapResult{Version: 4, Address: "unix:///run/x.sock", Protocol: "ttrpc"})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		response []byte
		want     *bootapi.BootstrapResult
		err      error // errors.Is target; nil with want == nil means any error
	}{
		{
			// What the v2.4.2 runc shim prints: a protobuf BootstrapResult.
			// This one ends in a newline byte, which must not be trimmed.
			name:     "protobuf v3 ttrpc ending in a newline byte",
			response: v3Proto,
			want:     v3,
		},
		{
			// A shim advertising capabilities as an extension (v2.4+): the
			// extension must be kept for the mount manager.
			name:     "protobuf v3 ttrpc with extensions",
			response: v3ExtProto,
			want:     v3Ext,
		},
		{
			// Stock does no version check on the protobuf path; we follow.
			// A shim that prints protobuf speaks the bootstrap protocol and
			// its version is taken at its word (the connect probe judges it).
			name:     "protobuf version 4 is not checked",
			response: v4Proto,
			want:     &bootapi.BootstrapResult{Version: 4, Address: "unix:///run/x.sock", Protocol: "ttrpc"},
		},
		{
			// A 2.x shim that speaks grpc advertises it in JSON.
			name:     "json version 2 grpc",
			response: []byte(`{"version":2,"address":"/run/shim.sock","protocol":"grpc"}`),
			want:     &bootapi.BootstrapResult{Version: 2, Address: "/run/shim.sock", Protocol: "grpc"},
		},
		{
			name:     "json version 2 ttrpc",
			response: []byte(`{"version":2,"address":"unix:///run/shim.sock","protocol":"ttrpc"}`),
			want:     &bootapi.BootstrapResult{Version: 2, Address: "unix:///run/shim.sock", Protocol: "ttrpc"},
		},
		{
			// The form bootstrap.json is stored in: the whole message must
			// survive, including a capability this containerd does not
			// define and an extension (a joining task reads the sandbox
			// shim's capabilities from here).
			name: "json version 3 with capabilities, metadata and extension",
			response: []byte(`{"version":3,"address":"unix:///run/shim.sock","protocol":"ttrpc",` +
				`"capabilities":[7],"metadata":{"a":"b"},` +
				`"extensions":[{"value":{"type_url":"type.googleapis.com/containerd.types.MountCapabilities","value":"CgVlcm9mcw=="}}]}`),
			want: &bootapi.BootstrapResult{
				Version: 3, Address: "unix:///run/shim.sock", Protocol: "ttrpc",
				Capabilities: []bootapi.Capability{7}, Metadata: map[string]string{"a": "b"},
				Extensions: []*bootapi.Extension{mountCapsExt()},
			},
		},
		{
			// Whitespace around a JSON reply (a shim printing a newline).
			name:     "json with surrounding whitespace",
			response: []byte("  {\"version\":3,\"address\":\"unix:///run/shim.sock\",\"protocol\":\"ttrpc\"}\n"),
			want:     &bootapi.BootstrapResult{Version: 3, Address: "unix:///run/shim.sock", Protocol: "ttrpc"},
		},
		{
			// JSON without a version is not a bootstrap reply: stock then
			// takes the whole text as an address. Odd, but that is what
			// both sides read back, so we must match it.
			name:     "json without version is an address",
			response: []byte(`{"address":"/run/shim.sock","protocol":"ttrpc"}`),
			want:     &bootapi.BootstrapResult{Version: 2, Address: `{"address":"/run/shim.sock","protocol":"ttrpc"}`, Protocol: "ttrpc"},
		},
		{
			// Same for an explicit version below 2.
			name:     "json version 1 is an address",
			response: []byte(`{"version":1,"address":"/run/shim.sock","protocol":"grpc"}`),
			want:     &bootapi.BootstrapResult{Version: 2, Address: `{"version":1,"address":"/run/shim.sock","protocol":"grpc"}`, Protocol: "ttrpc"},
		},
		{
			// A newer protocol than we speak: NotImplemented, so the caller
			// can tell "too new" from "broken". Keys match case-insensitively
			// in encoding/json, as stock's own case relies on.
			name:     "json version 4 is not implemented",
			response: []byte(`{"Version": 4,"Address":"/run/shim.sock","Protocol":"ttrpc"}`),
			err:      errdefs.ErrNotImplemented,
		},
		{
			// 2.x shims before the bootstrap protocol print the bare address,
			// with a trailing newline.
			name:     "plain unix address with trailing newline",
			response: []byte("unix:///run/containerd/s/0123abcd\n"),
			want:     &bootapi.BootstrapResult{Version: 2, Address: "unix:///run/containerd/s/0123abcd", Protocol: "ttrpc"},
		},
		{
			// Pre-1.5 shims print an address with no scheme, which the
			// dialer reads as the abstract socket "\x00<address>": it must
			// be kept verbatim, without a unix:// added.
			name:     "abstract address",
			response: []byte("/containerd-shim/9b3a1cf6e1f8a2c4.sock\n"),
			want:     &bootapi.BootstrapResult{Version: 2, Address: "/containerd-shim/9b3a1cf6e1f8a2c4.sock", Protocol: "ttrpc"},
		},
		{
			// Stock decodes an empty reply as an empty protobuf message and
			// would dial an empty abstract address; we reject it.
			name:     "empty reply",
			response: nil,
			err:      errdefs.ErrInvalidArgument,
		},
		{
			// A bootstrap reply that says where nothing is: stock would dial
			// the empty abstract address, be refused, and treat a live shim
			// as dead. It must be an error instead.
			name:     "protobuf without address",
			response: noAddrProto,
			err:      errdefs.ErrInvalidArgument,
		},
		{
			name:     "json version 3 without address",
			response: []byte(`{"version":3,"protocol":"ttrpc"}`),
			err:      errdefs.ErrInvalidArgument,
		},
		{
			name:     "whitespace-only reply",
			response: []byte(" \n\t\n"),
			err:      errdefs.ErrInvalidArgument,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStartResponse(tc.response)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("expected an error, got %s", prototext.Format(got))
				}
				if tc.err != nil && !errors.Is(err, tc.err) {
					t.Fatalf("error %v is not %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			requireProtoEqual(t, tc.want, got)
		})
	}
}

func TestRead(t *testing.T) {
	write := func(t *testing.T, dir, name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("bootstrap.json present", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, layout.FileBootstrap, `{"version":3,"address":"unix:///run/s/abc","protocol":"ttrpc","metadata":{"k":"v"}}`)
		// A stale legacy file must not win over bootstrap.json.
		write(t, dir, layout.FileAddress, "unix:///run/old.sock")
		p, legacy, err := Read(dir)
		if err != nil {
			t.Fatal(err)
		}
		if legacy {
			t.Error("legacy = true with bootstrap.json present")
		}
		requireProtoEqual(t, &bootapi.BootstrapResult{Version: 3, Address: "unix:///run/s/abc", Protocol: "ttrpc", Metadata: map[string]string{"k": "v"}}, p)
	})

	t.Run("legacy address file, nothing written", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, layout.FileAddress, "unix:///run/containerd/s/legacy")
		before := testshim.Snapshot(t, dir)
		p, legacy, err := Read(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !legacy {
			t.Error("legacy = false for an address file")
		}
		requireProtoEqual(t, &bootapi.BootstrapResult{Version: 2, Address: "unix:///run/containerd/s/legacy", Protocol: "ttrpc"}, p)
		// Stock migrates here (writes bootstrap.json); we leave that to the
		// caller, so a read is a read.
		testshim.RequireSameSnapshot(t, before, testshim.Snapshot(t, dir))
	})

	t.Run("both absent", func(t *testing.T) {
		dir := t.TempDir()
		_, _, err := Read(dir)
		if err == nil {
			t.Fatal("expected an error")
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("error %v does not wrap ErrNotExist", err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("created %d entries", len(entries))
		}
	})

	t.Run("empty address file", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, layout.FileAddress, "")
		before := testshim.Snapshot(t, dir)
		_, _, err := Read(dir)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "empty") {
			t.Fatalf("got %v, want an InvalidArgument error saying the address file is empty", err)
		}
		testshim.RequireSameSnapshot(t, before, testshim.Snapshot(t, dir))
	})

	t.Run("empty bootstrap.json", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, layout.FileBootstrap, "")
		write(t, dir, layout.FileAddress, "unix:///run/old.sock")
		_, _, err := Read(dir)
		if err == nil || !strings.Contains(err.Error(), layout.FileBootstrap) {
			t.Fatalf("got %v, want an error naming %s", err, layout.FileBootstrap)
		}
	})

	t.Run("bootstrap.json too new", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, layout.FileBootstrap, `{"version":4,"address":"unix:///run/s/abc","protocol":"ttrpc"}`)
		if _, _, err := Read(dir); !errors.Is(err, errdefs.ErrNotImplemented) {
			t.Fatalf("got %v, want ErrNotImplemented", err)
		}
	})

	t.Run("bootstrap.json unreadable", func(t *testing.T) {
		dir := t.TempDir()
		// A directory in its place: a read error that is not ENOENT must
		// not fall back to the legacy file.
		if err := os.Mkdir(filepath.Join(dir, layout.FileBootstrap), 0o700); err != nil {
			t.Fatal(err)
		}
		write(t, dir, layout.FileAddress, "unix:///run/old.sock")
		if _, _, err := Read(dir); err == nil {
			t.Fatal("expected an error")
		}
	})
}

func TestWrite(t *testing.T) {
	// The file mode must not depend on containerd's umask.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)

	unknown := &bootapi.Extension{Value: &anypb.Any{
		TypeUrl: "type.googleapis.com/example.com.SomeFutureCapability",
		Value:   []byte{0x0a, 0x03, 'a', 'b', 'c'},
	}}
	params := &bootapi.BootstrapResult{
		Version:      3,
		Address:      "unix:///run/containerd/s/0123abcd",
		Protocol:     "ttrpc",
		Capabilities: []bootapi.Capability{7},
		Metadata:     map[string]string{"note": "line\n", "a": "b"},
		Extensions:   []*bootapi.Extension{mountCapsExt(), unknown},
	}

	dir := t.TempDir()
	if err := Write(dir, params); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, layout.FileBootstrap)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	// Byte-identical to stock's writeBootstrapParams, which is
	// encoding/json of &params.
	stock, err := json.Marshal(&params)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != string(stock) {
		t.Errorf("bootstrap.json differs from stock encoding:\n got: %s\nwant: %s", data, stock)
	}
	// And pinned literally, so that a change of encoder (protojson, say)
	// on both sides of the comparison above still fails.
	const golden = `{"version":3,"address":"unix:///run/containerd/s/0123abcd","protocol":"ttrpc",` +
		`"capabilities":[7],"metadata":{"a":"b","note":"line\n"},` +
		`"extensions":[{"value":{"type_url":"type.googleapis.com/containerd.types.MountCapabilities","value":"CgVlcm9mcw=="}},` +
		`{"value":{"type_url":"type.googleapis.com/example.com.SomeFutureCapability","value":"CgNhYmM="}}]}`
	if string(data) != golden {
		t.Errorf("bootstrap.json:\n got: %s\nwant: %s", data, golden)
	}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode())
	}

	// Round trip, through both readers.
	got, err := ParseStartResponse(data)
	if err != nil {
		t.Fatal(err)
	}
	requireProtoEqual(t, params, got)
	got, legacy, err := Read(dir)
	if err != nil || legacy {
		t.Fatalf("ReadBootstrap: legacy=%v err=%v", legacy, err)
	}
	requireProtoEqual(t, params, got)
	var mc apitypes.MountCapabilities
	if found, err := got.FindExtension(&mc); err != nil || !found || len(mc.Types) != 1 || mc.Types[0] != "erofs" {
		t.Fatalf("MountCapabilities extension lost: found=%v err=%v %v", found, err, mc.Types)
	}

	// Overwriting is atomic: the only file left is bootstrap.json, with the
	// new content.
	params2 := &bootapi.BootstrapResult{Version: 2, Address: "unix:///run/containerd/s/downgraded", Protocol: "ttrpc"}
	if err := Write(dir, params2); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != layout.FileBootstrap {
		var n []string
		for _, e := range entries {
			n = append(n, e.Name())
		}
		t.Fatalf("dir holds %v, want only %s", n, layout.FileBootstrap)
	}
	got, _, err = Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	requireProtoEqual(t, params2, got)
}
