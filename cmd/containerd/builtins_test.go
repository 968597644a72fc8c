package main

import (
	"bytes"
	"encoding/json"
	"go/build"
	"go/build/constraint"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"

	"github.com/containerd/containerd/v2/pkg/timeout"
	"github.com/containerd/containerd/v2/plugins"
)

const (
	containerdModule = "github.com/containerd/containerd/v2"
	ourPlugin        = "github.com/shimkeeper/shimkeeper/plugin"
)

// The stock packages whose registrations we replace: linking either would
// register a duplicate (a panic at init) or a second shim manager.
var dropped = []string{
	containerdModule + "/core/runtime/v2",
	containerdModule + "/plugins/sandbox",
}

// TestRegistrations: the test binary links exactly what the daemon links,
// so a duplicate registration has already panicked by now; here we check
// that each replaced URI is registered once, by us.
func TestRegistrations(t *testing.T) {
	all := registry.Graph(func(*plugin.Registration) bool { return false })
	if len(all) < 50 {
		t.Fatalf("only %d registrations: the stock builtins are not linked", len(all))
	}
	byURI := map[string][]plugin.Registration{}
	byType := map[plugin.Type]int{}
	for _, r := range all {
		byURI[r.URI()] = append(byURI[r.URI()], r)
		byType[r.Type]++
	}
	for _, uri := range []string{
		plugins.ShimPlugin.String() + ".manager",
		plugins.RuntimePluginV2.String() + ".task",
		plugins.SandboxControllerPlugin.String() + ".shim",
	} {
		regs := byURI[uri]
		if len(regs) != 1 {
			t.Errorf("%s registered %d times, want 1", uri, len(regs))
			continue
		}
		fn := goruntime.FuncForPC(reflect.ValueOf(regs[0].InitFn).Pointer()).Name()
		if !strings.HasPrefix(fn, ourPlugin+".") {
			t.Errorf("%s is registered by %s, not by %s", uri, fn, ourPlugin)
		}
	}
	// ic.GetSingle(ShimPlugin) fails with two plugins of the type.
	if n := byType[plugins.ShimPlugin]; n != 1 {
		t.Errorf("%d plugins of type %s, want 1", n, plugins.ShimPlugin)
	}
	// Stock plugins that must still be there, as a sanity check of the
	// list itself.
	for _, uri := range []string{
		"io.containerd.grpc.v1.cri",
		"io.containerd.service.v1.tasks-service",
		"io.containerd.snapshotter.v1.overlayfs",
		"io.containerd.sandbox.store.v1.local",
	} {
		if len(byURI[uri]) != 1 {
			t.Errorf("stock plugin %s registered %d times, want 1", uri, len(byURI[uri]))
		}
	}

	// Stock sets these in core/runtime/v2; without them timeout.Get falls
	// back to 1s and `containerd config default` omits them.
	got := timeout.All()
	for key, want := range map[string]time.Duration{
		"io.containerd.timeout.shim.load":     5 * time.Second,
		"io.containerd.timeout.shim.cleanup":  5 * time.Second,
		"io.containerd.timeout.shim.shutdown": 3 * time.Second,
	} {
		if got[key] != want {
			t.Errorf("timeout %s = %v, want %v", key, got[key], want)
		}
	}
}

// goTool finds the go command that built this test.
func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if p := filepath.Join(goruntime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	t.Skip("no go command")
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// makefileTags returns GO_TAGS from the Makefile, which builds the daemon.
func makefileTags(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "Makefile"))
	if err != nil {
		t.Logf("no Makefile (%v); using urfave_cli_no_docs", err)
		return []string{"urfave_cli_no_docs"}
	}
	m := regexp.MustCompile(`(?m)^GO_TAGS\s*:?=\s*(.*)$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("Makefile has no GO_TAGS")
	}
	return strings.Fields(string(m[1]))
}

func goList(t *testing.T, env []string, args ...string) []byte {
	t.Helper()
	run := func(env []string) ([]byte, string, error) {
		cmd := exec.Command(goTool(t), append([]string{"list"}, args...)...)
		// Never download: the module graph must come from the cache.
		cmd.Env = append(append(os.Environ(), "GOPROXY=off"), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		return out, stderr.String(), err
	}
	out, stderr, err := run(env)
	if err != nil && strings.Contains(stderr, "build cache") {
		// A user without a writable GOCACHE (no HOME): go list needs one,
		// but nothing in it.
		out, stderr, err = run(append(slices.Clone(env), "GOCACHE="+t.TempDir()))
	}
	if err != nil && (strings.Contains(stderr, "module cache") || strings.Contains(stderr, "GOPROXY=off")) {
		t.Skipf("go list %v: the modules are not in this user's module cache:\n%s", args, stderr)
	}
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, stderr)
	}
	return out
}

func TestNoStockRuntimeDeps(t *testing.T) {
	base := makefileTags(t)
	for _, tc := range []struct {
		goos string
		tags []string
	}{
		{"linux", base},
		{"linux", append(slices.Clone(base), "no_cri")},
		{"linux", append(slices.Clone(base), "no_cri", "no_btrfs", "no_devmapper", "no_zfs", "no_tracing")},
		{"freebsd", base},
		{"windows", base},
	} {
		t.Run(tc.goos+" "+strings.Join(tc.tags, ","), func(t *testing.T) {
			out := goList(t, []string{"GOOS=" + tc.goos}, "-e", "-deps", "-tags", strings.Join(tc.tags, ","), ".")
			deps := strings.Fields(string(out))
			if len(deps) < 300 {
				t.Fatalf("go list returned %d packages: not the daemon's graph", len(deps))
			}
			// The list is the real one: it has the daemon's own pieces.
			for _, want := range []string{ourPlugin, containerdModule + "/cmd/containerd/command"} {
				if !slices.Contains(deps, want) {
					t.Errorf("%s missing from the dependency list", want)
				}
			}
			for _, bad := range append(slices.Clone(dropped), containerdModule+"/cmd/containerd/builtins") {
				if slices.Contains(deps, bad) {
					t.Errorf("%s is linked into the daemon", bad)
				}
			}
		})
	}
}

// builtinsFile is one file's blank imports and build constraint.
type builtinsFile struct {
	name       string
	imports    []string
	constraint string // the //go:build expression, "" if none
	mirrors    string // ours: the stock file named in the leading comment
	comments   string // ours: every comment, for the omission notes
}

var mirroredFrom = regexp.MustCompile(`mirrored from containerd \S+ cmd/containerd/builtins/(\S+\.go)`)

func parseBuiltins(t *testing.T, path string) builtinsFile {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly|parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	bf := builtinsFile{name: filepath.Base(path)}
	for _, imp := range f.Imports {
		p, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			t.Fatal(err)
		}
		if imp.Name == nil || imp.Name.Name != "_" {
			t.Errorf("%s: import %s is not a blank import", path, p)
		}
		bf.imports = append(bf.imports, p)
	}
	slices.Sort(bf.imports)
	var all []string
	for _, cg := range f.Comments {
		for _, c := range cg.List {
			all = append(all, c.Text)
			if constraint.IsGoBuild(c.Text) {
				expr, err := constraint.Parse(c.Text)
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				bf.constraint = expr.String()
			}
		}
	}
	bf.comments = strings.Join(all, "\n")
	if cg := f.Doc; cg != nil {
		if m := mirroredFrom.FindStringSubmatch(cg.Text()); m != nil {
			bf.mirrors = m[1]
		}
	}
	if bf.mirrors == "" {
		// The leading comment may sit above the package clause without being
		// its doc comment (after a //go:build line it still is); fall back
		// to any comment.
		if m := mirroredFrom.FindStringSubmatch(bf.comments); m != nil {
			bf.mirrors = m[1]
		}
	}
	return bf
}

// stockBuiltinsDir finds containerd's builtins dir through the module
// graph, so that the test follows the version in go.mod.
func stockBuiltinsDir(t *testing.T) string {
	t.Helper()
	var mod struct{ Dir, Version string }
	if err := json.Unmarshal(goList(t, nil, "-m", "-json", containerdModule), &mod); err != nil {
		t.Fatal(err)
	}
	if mod.Dir == "" {
		// Not in this user's module cache, and the test must not download.
		t.Skipf("module %s %s is not in the module cache", containerdModule, mod.Version)
	}
	return filepath.Join(mod.Dir, "cmd", "containerd", "builtins")
}

// matches reports which of a set of build environments select the file,
// by go/build's own rules (file name suffixes and //go:build).
func matches(t *testing.T, dir, name string) []string {
	t.Helper()
	var out []string
	for _, goos := range []string{"linux", "windows", "freebsd", "darwin", "solaris", "openbsd"} {
		for _, cgo := range []bool{true, false} {
			for _, tags := range [][]string{nil, {"no_cri"}, {"no_btrfs"}, {"no_devmapper"}, {"no_zfs"}, {"no_tracing"}} {
				ctx := build.Default
				ctx.GOOS, ctx.GOARCH, ctx.CgoEnabled, ctx.BuildTags = goos, "amd64", cgo, tags
				ok, err := ctx.MatchFile(dir, name)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					out = append(out, goos+"/cgo="+strconv.FormatBool(cgo)+"/"+strings.Join(tags, ","))
				}
			}
		}
	}
	return out
}

func TestBuiltinsMirrorStock(t *testing.T) {
	stockDir := stockBuiltinsDir(t)
	stockPaths, err := filepath.Glob(filepath.Join(stockDir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	stock := map[string]builtinsFile{}
	for _, p := range stockPaths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		stock[filepath.Base(p)] = parseBuiltins(t, p)
	}
	if len(stock) == 0 {
		t.Fatalf("no stock builtins in %s", stockDir)
	}

	ourPaths, err := filepath.Glob("builtins*.go")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, p := range ourPaths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		ours := parseBuiltins(t, p)
		if ours.mirrors == "" {
			t.Errorf("%s: no \"mirrored from ... cmd/containerd/builtins/<file>\" comment", p)
			continue
		}
		// The name mapping: builtins*.go keep their name, the others get a
		// builtins_ prefix (cri.go -> builtins_cri.go).
		wantName := ours.mirrors
		if !strings.HasPrefix(wantName, "builtins") {
			wantName = "builtins_" + wantName
		}
		if ours.name != wantName {
			t.Errorf("%s mirrors %s; expected it to be named %s", ours.name, ours.mirrors, wantName)
		}
		if prev, dup := seen[ours.mirrors]; dup {
			t.Errorf("%s and %s both mirror %s", prev, ours.name, ours.mirrors)
		}
		seen[ours.mirrors] = ours.name
		st, ok := stock[ours.mirrors]
		if !ok {
			t.Errorf("%s mirrors %s, which stock no longer has", ours.name, ours.mirrors)
			continue
		}

		want := slices.DeleteFunc(slices.Clone(st.imports), func(p string) bool { return slices.Contains(dropped, p) })
		if !slices.Equal(ours.imports, want) {
			t.Errorf("%s imports differ from stock %s minus the dropped packages:\n ours:  %v\n stock: %v\n only ours: %v\n only stock: %v",
				ours.name, st.name, ours.imports, want, minus(ours.imports, want), minus(want, ours.imports))
		}
		for _, d := range dropped {
			if slices.Contains(st.imports, d) && !strings.Contains(ours.comments, strings.TrimPrefix(d, containerdModule+"/")+" omitted") {
				t.Errorf("%s drops %s without a comment saying so", ours.name, d)
			}
		}
		if ours.constraint != st.constraint {
			t.Errorf("%s: //go:build %q, stock %s has %q", ours.name, ours.constraint, st.name, st.constraint)
		}
		// Same effective constraint, file name suffixes included.
		if a, b := matches(t, ".", ours.name), matches(t, stockDir, st.name); !slices.Equal(a, b) {
			t.Errorf("%s is built for\n  %v\nbut stock %s for\n  %v", ours.name, a, st.name, b)
		}
	}
	for name := range stock {
		if _, ok := seen[name]; !ok {
			t.Errorf("stock builtins file %s has no mirror in cmd/containerd", name)
		}
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// TestMainImports: main links our plugin package and command.App, and no
// file of the package links the stock builtins package.
func TestMainImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range files {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		var imports []string
		for _, imp := range f.Imports {
			ip, _ := strconv.Unquote(imp.Path.Value)
			imports = append(imports, ip)
		}
		if slices.Contains(imports, containerdModule+"/cmd/containerd/builtins") {
			t.Errorf("%s imports the stock builtins package", p)
		}
		if p == "main.go" {
			for _, want := range []string{ourPlugin, containerdModule + "/cmd/containerd/command"} {
				if !slices.Contains(imports, want) {
					t.Errorf("main.go does not import %s", want)
				}
			}
		}
	}
}
