package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runSh runs `toybox sh -c script` in process and returns status and output.
func runSh(t *testing.T, script string, extra ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	argv := append([]string{"toybox", "sh", "-c", script}, extra...)
	status := run(argv, stdio{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb})
	return status, out.String(), errb.String()
}

func TestShell(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TOYBOX_TEST_DIR", dir)
	for _, tc := range []struct {
		name   string
		script string
		args   []string
		status int
		out    string
	}{
		{name: "brief example", script: "echo hi; sleep 0.01; exit 3", status: 3, out: "hi\n"},
		{name: "exit stops the script", script: "exit 4; echo no", status: 4},
		{name: "last status", script: "true; false", status: 1},
		{name: "fail applet", script: "fail 7", status: 7},
		{name: "status variable", script: "fail 3; echo $?", out: "3\n"},
		{name: "and/or", script: "false && echo a || echo b; true && echo c", out: "b\nc\n"},
		{name: "quotes", script: `echo 'a;b' "c  d" e\;f`, out: "a;b c  d e;f\n"},
		{name: "double-quote expansion", script: `X=1; echo "x=$X ${X}" '$X'`, out: "x=1 1 $X\n"},
		{name: "positional", script: `echo $0 $1 $#`, args: []string{"me", "one"}, out: "me one 1\n"},
		{name: "newlines and comments", script: "# c\necho a # trailing\n\necho b\n", out: "a\nb\n"},
		{name: "redirect", script: `echo x > $TOYBOX_TEST_DIR/f; echo y >> $TOYBOX_TEST_DIR/f; cat < $TOYBOX_TEST_DIR/f`, out: "x\ny\n"},
		{name: "id -G", script: `echo $(id -G) | grep -q "^[0-9]"`},
		{name: "seq", script: `seq 2 4`, out: "2\n3\n4\n"},
		{name: "busybox error text", script: `touch /nonexistent/x 2>&1`, status: 1, out: "touch: /nonexistent/x: No such file or directory\n"},
		{name: "stderr to stdout", script: `cat /nonexistent 2>&1`, status: 1, out: "cat: open /nonexistent: no such file or directory\n"},
		{name: "unknown command", script: "nosuchcommand-xyz", status: 127},
		{name: "pipe", script: "echo a | cat | cat", out: "a\n"},
		{name: "pipe status is the last one's", script: "false | true", status: 0},
		{name: "negated pipeline", script: "! echo a | grep -q b", status: 0},
		{name: "grep in a pipe", script: `touch /nonexistent/x 2>&1 | grep -q "No such file"`, status: 0},
		{name: "command substitution", script: `echo "$(echo a b):$(echo c)" $(echo d   e)`, out: "a b:c d e\n"},
		{name: "substitution in a pipe", script: `echo $(echo x | cat)`, out: "x\n"},
		{name: "for loop", script: "for i in $(seq 1 3); do echo n$i; done; echo end", out: "n1\nn2\nn3\nend\n"},
		{name: "while loop", script: `X=; while [ "$X" != aaa ]; do X=a$X; echo $X; done`, out: "a\naa\naaa\n"},
		{name: "until loop", script: `until true; do echo no; done; echo yes`, out: "yes\n"},
		{name: "nested loops", script: "for a in 1 2; do for b in x y; do echo $a$b; done; done", out: "1x\n1y\n2x\n2y\n"},
		{name: "test", script: `[ -d / ] && [ ! -f / ] && test 2 -lt 10 && echo ok`, out: "ok\n"},
		{name: "missing done", script: "for i in 1; do echo", status: 2},
		{name: "dangling pipe", script: "echo a |", status: 2},
		{name: "unterminated quote", script: "echo 'a", status: 2},
		{name: "dangling and", script: "true &&", status: 2},
		{name: "external command", script: "/bin/sh -c 'exit 5'; echo $?", out: "5\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(tc.script, "/bin/sh") {
				if _, err := os.Stat("/bin/sh"); err != nil {
					t.Skip("no /bin/sh")
				}
			}
			status, out, errs := runSh(t, tc.script, tc.args...)
			if status != tc.status || out != tc.out {
				t.Errorf("sh -c %q = %d, %q (stderr %q); want %d, %q", tc.script, status, out, errs, tc.status, tc.out)
			}
		})
	}
}

func TestSplitCommands(t *testing.T) {
	cmds, err := splitCommands("a; b && c || d\ne 2>&1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cmds {
		got = append(got, c.op+"|"+c.text)
	}
	want := []string{"|a", ";|b", "&&|c", "|||d", ";|e 2>&1"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]string{"1": "1s", "0.5": "500ms", "100ms": "100ms", "2m": "2m0s", "1d": "24h0m0s"} {
		d, inf, err := parseDuration(in)
		if err != nil || inf || d.String() != want {
			t.Errorf("parseDuration(%q) = %v, %v, %v; want %s", in, d, inf, err, want)
		}
	}
	if _, inf, err := parseDuration("infinity"); err != nil || !inf {
		t.Errorf("infinity: %v %v", inf, err)
	}
	if _, _, err := parseDuration("-1"); err == nil {
		t.Error("negative duration accepted")
	}
}

func TestAppletsAndDispatch(t *testing.T) {
	var out bytes.Buffer
	if s := run([]string{"/bin/echo", "-n", "a", "b"}, stdio{Stdout: &out, Stderr: &out}); s != 0 || out.String() != "a b" {
		t.Errorf("argv[0] dispatch: %d %q", s, out.String())
	}
	out.Reset()
	if s := run([]string{"toybox", "--list"}, stdio{Stdout: &out, Stderr: &out}); s != 0 || !strings.Contains(out.String(), "sleep\n") {
		t.Errorf("--list: %d %q", s, out.String())
	}
	if s := run([]string{"toybox", "nope"}, stdio{Stdout: &out, Stderr: &out}); s != 127 {
		t.Errorf("unknown applet status %d", s)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "b"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, ".h"), nil, 0o644)
	out.Reset()
	if s := run([]string{"ls", dir}, stdio{Stdout: &out, Stderr: &out}); s != 0 || out.String() != "b\n" {
		t.Errorf("ls: %d %q", s, out.String())
	}
}
