package main

// The shell's compound commands: pipelines and loops, and how the
// commands of splitCommands group into them.

import (
	"fmt"
	"os"
	"strings"
)

// runLoop runs a for, while or until loop.
func (s *shell) runLoop(l *loop) int {
	status := 0
	if l.kind == "for" {
		words, _, err := s.words(l.words)
		if err != nil {
			fmt.Fprintln(s.std.Stderr, "sh:", err)
			return 2
		}
		for _, w := range words {
			if s.exited {
				break
			}
			os.Setenv(l.name, w)
			status = s.runNodes(l.body, false)
		}
		return status
	}
	for !s.exited {
		if ok := s.runNodes(l.cond, false) == 0; ok != (l.kind == "while") {
			break
		}
		status = s.runNodes(l.body, false)
	}
	return status
}

// runPipeline runs the commands of a pipeline at once, each one's stdout
// the next one's stdin, and returns the last one's status.
func (s *shell) runPipeline(texts []string) int {
	statuses := make([]int, len(texts))
	done := make(chan struct{}, len(texts))
	in := s.std.Stdin
	for i, text := range texts {
		sub := *s
		sub.std.Stdin = in
		var w *os.File
		if i < len(texts)-1 {
			r, pw, err := os.Pipe()
			if err != nil {
				fmt.Fprintln(s.std.Stderr, "sh:", err)
				return 1
			}
			sub.std.Stdout, w, in = pw, pw, r
		}
		go func(i int, text string, sub shell, w *os.File) {
			statuses[i] = sub.runCommand(text, false)
			if w != nil {
				w.Close() // the next command sees EOF
			}
			if r, ok := sub.std.Stdin.(*os.File); ok && i > 0 {
				r.Close()
			}
			done <- struct{}{}
		}(i, text, sub, w)
	}
	for range texts {
		<-done
	}
	return statuses[len(texts)-1]
}

// node is a pipeline or a loop, and the operator that joins it to the
// node before it ("", ";", "&&" or "||").
type node struct {
	op       string
	negate   bool     // `! pipeline`
	pipeline []string // simple commands joined by |
	loop     *loop
}

// loop is `for NAME in WORDS; do BODY; done`, or `while|until COND; do
// BODY; done`.
type loop struct {
	kind       string // for, while, until
	name       string // for's variable
	words      string // for's word list, expanded when the loop runs
	cond, body []node
}

// parseNodes groups the commands of splitCommands into pipelines and
// loops.
func parseNodes(cmds []command) ([]node, error) {
	nodes, rest, err := parseUntil(cmds, "")
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("%w near %q", errSyntax, rest[0].text)
	}
	return nodes, err
}

// parseUntil parses commands until one that starts with the keyword end
// (not consumed; "" for none) and returns the commands left.
func parseUntil(cmds []command, end string) ([]node, []command, error) {
	var out []node
	for len(cmds) > 0 {
		c := cmds[0]
		first, rest := firstWord(c.text)
		if first == end || (end == "" && (first == "do" || first == "done")) {
			return out, cmds, nil
		}
		switch first {
		case "for", "while", "until":
			l := &loop{kind: first}
			var err error
			if first == "for" {
				name, in := firstWord(rest)
				kw, words := firstWord(in)
				if name == "" || kw != "in" {
					return nil, nil, fmt.Errorf("%w: for NAME in WORDS", errSyntax)
				}
				l.name, l.words = name, words
				cmds = cmds[1:]
			} else {
				cmds = append([]command{{op: c.op, text: rest}}, cmds[1:]...)
				if l.cond, cmds, err = parseUntil(cmds, "do"); err != nil {
					return nil, nil, err
				}
			}
			if cmds, err = keyword(cmds, "do"); err != nil {
				return nil, nil, err
			}
			if l.body, cmds, err = parseUntil(cmds, "done"); err != nil {
				return nil, nil, err
			}
			if cmds, err = keyword(cmds, "done"); err != nil {
				return nil, nil, err
			}
			if len(cmds) > 0 && cmds[0].op == "|" {
				return nil, nil, fmt.Errorf("%w: a loop in a pipeline", errSyntax)
			}
			out = append(out, node{op: c.op, loop: l})
			continue
		}
		n := node{op: c.op}
		if first == "!" {
			n.negate, c.text = true, rest
		}
		n.pipeline = []string{c.text}
		cmds = cmds[1:]
		for len(cmds) > 0 && cmds[0].op == "|" {
			n.pipeline = append(n.pipeline, cmds[0].text)
			cmds = cmds[1:]
		}
		out = append(out, n)
	}
	if end != "" {
		return nil, nil, fmt.Errorf("%w: missing %s", errSyntax, end)
	}
	return out, nil, nil
}

// keyword consumes the keyword kw that starts cmds[0]; what follows it is
// a command of its own.
func keyword(cmds []command, kw string) ([]command, error) {
	if len(cmds) == 0 {
		return nil, fmt.Errorf("%w: missing %s", errSyntax, kw)
	}
	first, rest := firstWord(cmds[0].text)
	if first != kw {
		return nil, fmt.Errorf("%w: %q where %s belongs", errSyntax, cmds[0].text, kw)
	}
	if rest == "" {
		return cmds[1:], nil
	}
	return append([]command{{op: ";", text: rest}}, cmds[1:]...), nil
}

// firstWord splits text at its first blank.
func firstWord(text string) (first, rest string) {
	text = strings.TrimSpace(text)
	i := strings.IndexAny(text, " \t\n")
	if i < 0 {
		return text, ""
	}
	return text[:i], strings.TrimSpace(text[i+1:])
}
