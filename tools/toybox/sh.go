package main

// A deliberately small shell: enough for test containers to run
// `sh -c "echo hi; sleep 1; exit 3"` and similar one-liners.
//
// Supported: commands separated by `;`, newlines, `&&` and `||`; pipelines
// (`a | b`, `! a`); `for NAME in WORDS; do ...; done`, `while` and `until`
// loops; single and double quotes; backslash escapes; `$NAME`, `${NAME}`,
// `$?`, `$$`, `$#`, `$0`-`$9`, `$@`/`$*` (expanded when the command runs, so
// `fail 3; echo $?` prints 3); command substitution `$(...)`, split into
// words unless quoted; `NAME=value` assignments; redirections `>`, `>>`,
// `<`, `2>`, `2>>`, `2>&1`; `#` comments; the builtins `exit [N]`, `cd DIR`,
// `export NAME=value` and `exec CMD...`. Commands that are toybox applets
// run in process; anything else is looked up on PATH and run as a child (or
// exec'd when it is the whole script). Not supported: `&`, globbing,
// subshells, functions, `if`, `case`, `trap`.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// errSyntax marks a script the shell cannot parse; the shell exits 2 for it.
var errSyntax = errors.New("syntax error")

// shell holds interpreter state for one sh invocation.
type shell struct {
	std    stdio
	status int      // $?
	args   []string // $0, $1, ...
	exited bool     // an `exit` builtin ran
}

func sh(st stdio, args []string) int {
	name := "sh" // $0, and the prefix of what the shell says
	if filepath.Base(os.Args[0]) == "sh" {
		name = os.Args[0]
	}
	s := &shell{std: st, args: []string{name}}
	switch {
	case len(args) >= 2 && args[0] == "-c":
		if len(args) > 2 {
			s.args = args[2:]
		}
		return s.runScript(args[1], true)
	case len(args) == 1 && args[0] == "-c":
		fmt.Fprintln(st.Stderr, "sh: -c requires an argument")
		return 2
	case len(args) >= 1:
		b, err := os.ReadFile(args[0])
		if err != nil {
			fmt.Fprintln(st.Stderr, "sh:", err)
			return 127
		}
		s.args = args
		return s.runScript(string(b), false)
	default:
		return s.interactive()
	}
}

// interactive reads commands from stdin one line at a time.
func (s *shell) interactive() int {
	tty := false
	if f, ok := s.std.Stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	r := bufio.NewReader(s.std.Stdin)
	for !s.exited {
		if tty {
			fmt.Fprint(s.std.Stderr, "# ")
		}
		line, err := r.ReadString('\n')
		if line != "" {
			s.runScript(line, false)
		}
		if err != nil {
			break
		}
	}
	return s.status
}

// runScript runs every command of script and returns the last status. When
// mayExec is set and the script is a single external command, the shell
// replaces itself with it, as real shells do for `sh -c cmd`.
func (s *shell) runScript(script string, mayExec bool) int {
	cmds, err := splitCommands(script)
	var nodes []node
	if err == nil {
		nodes, err = parseNodes(cmds)
	}
	if err != nil {
		fmt.Fprintln(s.std.Stderr, "sh:", err)
		s.status = 2
		return 2
	}
	return s.runNodes(nodes, mayExec && len(cmds) == 1)
}

// runNodes runs a list of pipelines and loops.
func (s *shell) runNodes(nodes []node, mayExec bool) int {
	for _, n := range nodes {
		if s.exited {
			break
		}
		if (n.op == "&&" && s.status != 0) || (n.op == "||" && s.status == 0) {
			continue
		}
		switch {
		case n.loop != nil:
			s.status = s.runLoop(n.loop)
		case len(n.pipeline) == 1 && !n.negate:
			s.status = s.runCommand(n.pipeline[0], mayExec)
		default:
			s.status = s.runPipeline(n.pipeline)
			if n.negate {
				s.status = boolStatus(s.status != 0)
			}
		}
	}
	return s.status
}

func boolStatus(ok bool) int {
	if ok {
		return 0
	}
	return 1
}

// command is one simple command and the operator that joins it to the one
// before it ("" for the first, ";", "&&", "||" or "|").
type command struct {
	op   string
	text string
}

// splitCommands cuts a script at unquoted `;`, newlines, `&&`, `||` and
// `|` outside `$(...)`, dropping comments and empty commands. It rejects
// `&`.
func splitCommands(script string) ([]command, error) {
	var (
		out     []command
		cur     strings.Builder
		op      = ""
		quote   rune
		escaped bool
		atStart = true // at the start of a word, where `#` begins a comment
		depth   int    // inside $( ... )
	)
	flush := func(next string) error {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			if next == "&&" || next == "||" || next == "|" {
				return fmt.Errorf("%w near %q", errSyntax, next)
			}
			if op == "&&" || op == "||" || op == "|" {
				return nil // keep waiting for the right-hand side
			}
		} else {
			out = append(out, command{op: op, text: text})
		}
		op = next
		return nil
	}
	rs := []rune(script)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		if escaped {
			cur.WriteRune(c)
			escaped = false
			atStart = false
			continue
		}
		if quote != 0 {
			cur.WriteRune(c)
			if c == '\\' && quote == '"' {
				escaped = true
			} else if c == quote {
				quote = 0
			}
			continue
		}
		switch {
		case c == '\\':
			cur.WriteRune(c)
			escaped = true
		case c == '\'' || c == '"':
			cur.WriteRune(c)
			quote = c
		case c == '$' && i+1 < len(rs) && rs[i+1] == '(':
			cur.WriteString("$(")
			i++
			depth++
		case c == ')' && depth > 0:
			cur.WriteRune(c)
			depth--
		case depth > 0:
			cur.WriteRune(c)
		case c == '#' && atStart:
			for i < len(rs) && rs[i] != '\n' {
				i++
			}
			i-- // let the newline end the command
		case c == ';' || c == '\n':
			if err := flush(";"); err != nil {
				return nil, err
			}
		case c == '&' && i+1 < len(rs) && rs[i+1] == '&':
			i++
			if err := flush("&&"); err != nil {
				return nil, err
			}
		case c == '|' && i+1 < len(rs) && rs[i+1] == '|':
			i++
			if err := flush("||"); err != nil {
				return nil, err
			}
		case c == '&' && !(i > 0 && rs[i-1] == '>'):
			return nil, fmt.Errorf("%w: background jobs (&) are not supported", errSyntax)
		case c == '|':
			if err := flush("|"); err != nil {
				return nil, err
			}
		default:
			cur.WriteRune(c)
		}
		atStart = c == ' ' || c == '\t' || c == '\n' || c == ';' || c == '&' || c == '|'
	}
	if quote != 0 {
		return nil, fmt.Errorf("%w: unterminated %c quote", errSyntax, quote)
	}
	if depth > 0 {
		return nil, fmt.Errorf("%w: unterminated $(", errSyntax)
	}
	if escaped {
		cur.WriteRune('\\')
	}
	if err := flush(";"); err != nil {
		return nil, err
	}
	if op == "&&" || op == "||" || op == "|" {
		return nil, fmt.Errorf("%w: missing command after %s", errSyntax, op)
	}
	return out, nil
}

// redirect is one I/O redirection of a command.
type redirect struct {
	fd     int    // 0, 1 or 2
	op     string // "<", ">", ">>" or ">&"
	target string // file name, or "1" for 2>&1
}

// words tokenizes and expands one simple command.
func (s *shell) words(text string) (words []string, redirs []redirect, err error) {
	var (
		cur     strings.Builder
		inWord  bool
		quote   rune
		pending *redirect // waiting for its target word
	)
	emit := func() {
		if !inWord {
			return
		}
		w := cur.String()
		cur.Reset()
		inWord = false
		if pending != nil {
			pending.target = w
			redirs = append(redirs, *pending)
			pending = nil
			return
		}
		words = append(words, w)
	}
	rs := []rune(text)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				cur.WriteRune(c)
			}
		case c == '\\' && quote == '"':
			if i+1 < len(rs) && strings.ContainsRune(`"\$`+"`", rs[i+1]) {
				i++
				cur.WriteRune(rs[i])
			} else {
				cur.WriteRune(c)
			}
		case c == '"' && quote == '"':
			quote = 0
		case c == '$' && i+1 < len(rs) && rs[i+1] == '(':
			end := closingParen(rs, i+2)
			if end < 0 {
				return nil, nil, fmt.Errorf("%w: unterminated $(", errSyntax)
			}
			out := s.substitute(string(rs[i+2 : end]))
			i = end
			if quote == '"' {
				cur.WriteString(out)
				inWord = true
				continue
			}
			for j, f := range strings.Fields(out) { // unquoted: split into words
				if j > 0 {
					emit()
				}
				cur.WriteString(f)
				inWord = true
			}
		case c == '$':
			n := s.expand(rs[i+1:], &cur)
			i += n
			inWord = true
		case quote == '"':
			cur.WriteRune(c)
		case c == '\\':
			if i+1 < len(rs) {
				i++
				cur.WriteRune(rs[i])
			}
			inWord = true
		case c == '\'' || c == '"':
			quote = c
			inWord = true
		case c == ' ' || c == '\t' || c == '\r':
			emit()
		case c == '<' || c == '>':
			fd := 1
			if c == '<' {
				fd = 0
			}
			if inWord && (cur.String() == "1" || cur.String() == "2") {
				fd, _ = strconv.Atoi(cur.String())
				cur.Reset()
				inWord = false
			}
			emit()
			if pending != nil {
				return nil, nil, fmt.Errorf("%w: missing redirection target", errSyntax)
			}
			r := &redirect{fd: fd, op: string(c)}
			if c == '>' && i+1 < len(rs) && rs[i+1] == '>' {
				i++
				r.op = ">>"
			} else if c == '>' && i+2 < len(rs) && rs[i+1] == '&' && rs[i+2] == '1' && fd == 2 {
				i += 2
				redirs = append(redirs, redirect{fd: 2, op: ">&", target: "1"})
				continue
			}
			pending = r
		default:
			cur.WriteRune(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, nil, fmt.Errorf("%w: unterminated %c quote", errSyntax, quote)
	}
	emit()
	if pending != nil {
		return nil, nil, fmt.Errorf("%w: missing redirection target", errSyntax)
	}
	return words, redirs, nil
}

// closingParen is the index of the ) that closes the $( whose contents
// start at rs[from], or -1.
func closingParen(rs []rune, from int) int {
	depth := 1
	var quote rune
	for i := from; i < len(rs); i++ {
		switch c := rs[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			if depth--; depth == 0 {
				return i
			}
		}
	}
	return -1
}

// substitute runs script as $(script) does: its stdout, without the
// trailing newlines; $? becomes its status.
func (s *shell) substitute(script string) string {
	var out strings.Builder
	sub := &shell{std: stdio{Stdin: s.std.Stdin, Stdout: &out, Stderr: s.std.Stderr}, args: s.args, status: s.status}
	s.status = sub.runScript(script, false)
	return strings.TrimRight(out.String(), "\n")
}

// expand writes the value of the parameter that starts rs (just after `$`)
// and returns how many runes it consumed.
func (s *shell) expand(rs []rune, out *strings.Builder) int {
	if len(rs) == 0 {
		out.WriteRune('$')
		return 0
	}
	switch c := rs[0]; {
	case c == '?':
		out.WriteString(strconv.Itoa(s.status))
		return 1
	case c == '$':
		out.WriteString(strconv.Itoa(os.Getpid()))
		return 1
	case c == '#':
		out.WriteString(strconv.Itoa(len(s.args) - 1))
		return 1
	case c == '@' || c == '*':
		out.WriteString(strings.Join(s.args[1:], " "))
		return 1
	case c >= '0' && c <= '9':
		if n := int(c - '0'); n < len(s.args) {
			out.WriteString(s.args[n])
		}
		return 1
	case c == '{':
		end := strings.IndexRune(string(rs), '}')
		if end < 0 {
			out.WriteRune('$')
			return 0
		}
		out.WriteString(os.Getenv(string(rs[1:end])))
		return len([]rune(string(rs[:end+1])))
	case isNameRune(c, true):
		n := 1
		for n < len(rs) && isNameRune(rs[n], false) {
			n++
		}
		out.WriteString(os.Getenv(string(rs[:n])))
		return n
	default:
		out.WriteRune('$')
		return 0
	}
}

func isNameRune(c rune, first bool) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9')
}

// isAssignment reports whether w has the form NAME=value.
func isAssignment(w string) bool {
	eq := strings.IndexByte(w, '=')
	if eq <= 0 {
		return false
	}
	for i, c := range w[:eq] {
		if !isNameRune(c, i == 0) {
			return false
		}
	}
	return true
}

// runCommand runs one simple command and returns its status.
func (s *shell) runCommand(text string, mayExec bool) int {
	words, redirs, err := s.words(text)
	if err != nil {
		fmt.Fprintln(s.std.Stderr, "sh:", err)
		return 2
	}
	for len(words) > 0 && isAssignment(words[0]) {
		kv := strings.SplitN(words[0], "=", 2)
		os.Setenv(kv[0], kv[1])
		words = words[1:]
	}
	st, closeAll, err := s.applyRedirects(redirs)
	if err != nil {
		fmt.Fprintln(s.std.Stderr, "sh:", err)
		return 1
	}
	defer closeAll()
	if len(words) == 0 {
		return 0
	}
	switch words[0] {
	case "exit":
		s.exited = true
		if len(words) > 1 {
			n, err := strconv.Atoi(words[1])
			if err != nil {
				fmt.Fprintf(st.Stderr, "sh: exit: illegal number: %s\n", words[1])
				return 2
			}
			return n & 0xff
		}
		return s.status
	case "cd":
		dir := os.Getenv("HOME")
		if len(words) > 1 {
			dir = words[1]
		}
		if dir == "" {
			dir = "/"
		}
		if err := os.Chdir(dir); err != nil {
			fmt.Fprintln(st.Stderr, "sh: cd:", err)
			return 1
		}
		return 0
	case "export":
		for _, w := range words[1:] {
			if isAssignment(w) {
				kv := strings.SplitN(w, "=", 2)
				os.Setenv(kv[0], kv[1])
			}
		}
		return 0
	case "exec":
		if len(words) == 1 {
			return 0
		}
		s.exited = true
		return s.exec(st, words[1:], true)
	}
	return s.exec(st, words, mayExec && len(redirs) == 0)
}

// exec runs words as an applet or external program. With replace set an
// external program replaces the shell process.
func (s *shell) exec(st stdio, words []string, replace bool) int {
	if a, ok := s.inProcess(words[0]); ok {
		if shadowedByNonExecutable(words[0]) {
			fmt.Fprintf(st.Stderr, "%s: %s: Permission denied\n", s.args[0], words[0])
			return 126
		}
		return a(st, words[1:])
	}
	path, err := exec.LookPath(words[0])
	if err != nil {
		fmt.Fprintf(st.Stderr, "sh: %s: not found\n", words[0])
		return 127
	}
	if replace {
		err := syscall.Exec(path, words, os.Environ())
		fmt.Fprintf(st.Stderr, "sh: exec %s: %v\n", words[0], err)
		return 126
	}
	cmd := exec.Command(path, words[1:]...)
	cmd.Args[0] = words[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = st.Stdin, st.Stdout, st.Stderr
	// Forward TERM and INT so that a shell running as PID 1 can be stopped
	// while it waits for a child.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(st.Stderr, "sh: %s: %v\n", words[0], err)
		return 126
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case v := <-sig:
				_ = cmd.Process.Signal(v)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	fmt.Fprintf(st.Stderr, "sh: %s: %v\n", words[0], err)
	return 1
}

// shadowedByNonExecutable reports whether the first file named name on
// PATH cannot be executed, as when a container masks /bin/ls with
// /dev/null: a real shell's exec of it fails with EACCES, so the applet
// must not run either.
func shadowedByNonExecutable(name string) bool {
	if strings.Contains(name, "/") {
		return false
	}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		if err != nil {
			continue
		}
		return fi.IsDir() || syscall.Access(path, 1) != nil // X_OK
	}
	return false
}

// inProcess returns the applet for name when name is a bare applet name, or a
// path to a file that is this very binary (e.g. /bin/sleep -> toybox).
func (s *shell) inProcess(name string) (applet, bool) {
	base := filepath.Base(name)
	a, ok := applets[base]
	if !ok && base == "toybox" {
		return func(st stdio, args []string) int { return run(append([]string{"toybox"}, args...), st) }, true
	}
	if !ok {
		return nil, false
	}
	if !strings.Contains(name, "/") {
		return a, true
	}
	fi, err := os.Stat(name)
	if err != nil {
		return nil, false
	}
	self, err := os.Stat("/proc/self/exe")
	if err != nil || !os.SameFile(fi, self) {
		return nil, false
	}
	return a, true
}

// applyRedirects opens the files of redirs and returns the streams to use and
// a function that closes what was opened.
func (s *shell) applyRedirects(redirs []redirect) (stdio, func(), error) {
	st := s.std
	var opened []*os.File
	closeAll := func() {
		for _, f := range opened {
			f.Close()
		}
	}
	for _, r := range redirs {
		if r.op == ">&" {
			st.Stderr = st.Stdout
			continue
		}
		var f *os.File
		var err error
		switch r.op {
		case "<":
			f, err = os.Open(r.target)
		case ">":
			f, err = os.OpenFile(r.target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		case ">>":
			f, err = os.OpenFile(r.target, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		}
		if err != nil {
			closeAll()
			return st, func() {}, err
		}
		opened = append(opened, f)
		var w io.Writer = f
		switch r.fd {
		case 0:
			st.Stdin = f
		case 1:
			st.Stdout = w
		case 2:
			st.Stderr = w
		}
	}
	return st, closeAll, nil
}
