package plugin

import (
	"bytes"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/containerd/containerd/v2/core/runtime"
)

func TestUnknownStatusFilter(t *testing.T) {
	var out bytes.Buffer
	l := logrus.New()
	l.Out = &out
	l.SetFormatter(unknownStatusFilter{&logrus.TextFormatter{DisableTimestamp: true}})
	l.WithField("status", runtime.Status(0)).Warn("unknown status")
	if out.Len() != 0 {
		t.Fatalf("status 0 logged: %q", out.String())
	}
	l.WithField("status", runtime.Status(42)).Warn("unknown status")
	l.WithField("status", runtime.Status(0)).Warn("something else")
	if got := bytes.Count(out.Bytes(), []byte("\n")); got != 2 {
		t.Fatalf("want the other two lines, got %q", out.String())
	}
}

// A dropped line reaches the output as an empty write, which skipEmpty
// does not pass on (it would be a write(2) per dropped line).
func TestSkipEmpty(t *testing.T) {
	var w countingWriter
	l := logrus.New()
	l.SetOutput(&w)
	l.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true})
	quiet(l)
	for range 3 {
		l.WithField("status", runtime.Status(0)).Warn("unknown status")
	}
	l.Warn("kept")
	if w.calls != 1 || !bytes.Contains(w.buf.Bytes(), []byte("kept")) {
		t.Fatalf("%d writes of %q; want one, the kept line", w.calls, w.buf.String())
	}
}

type countingWriter struct {
	buf   bytes.Buffer
	calls int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.calls++
	return w.buf.Write(p)
}
