package plugin

import (
	"io"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/containerd/containerd/v2/core/runtime"
)

// The tasks service (plugins/services/tasks/local.go getProcessState)
// warns "unknown status" for every task whose State has no known status,
// at every listing: with 400 shims kept UNKNOWN and a client polling
// `ctr task ls`, that was about 97,000 lines in 40 s. The only tasks that
// answer with status 0 are recovery's placeholders, each of which
// recovery logs once when it keeps it ("kept shim state untouched") and
// once when it settles. quietUnknownStatus drops the tasks service's line
// for status 0 (any other unknown value still shows).
//
// logrus writes what the formatter returns even when it is empty, and a
// zero-length write is still a write(2), under the logger's lock: every
// dropped line would cost one. The output is wrapped to skip those.
var quietOnce sync.Once

func quietUnknownStatus() {
	quietOnce.Do(func() { quiet(logrus.StandardLogger()) })
}

func quiet(l *logrus.Logger) {
	l.SetFormatter(unknownStatusFilter{l.Formatter})
	l.SetOutput(skipEmpty{l.Out})
}

// skipEmpty writes to W all but empty writes.
type skipEmpty struct{ io.Writer }

func (w skipEmpty) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return w.Writer.Write(p)
}

type unknownStatusFilter struct{ logrus.Formatter }

func (f unknownStatusFilter) Format(e *logrus.Entry) ([]byte, error) {
	if e.Level == logrus.WarnLevel && e.Message == "unknown status" {
		if st, ok := e.Data["status"].(runtime.Status); ok && st == 0 {
			return nil, nil
		}
	}
	return f.Formatter.Format(e)
}
