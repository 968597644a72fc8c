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
