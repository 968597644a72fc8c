package plugin

import (
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
var quietOnce sync.Once

func quietUnknownStatus() {
	quietOnce.Do(func() {
		l := logrus.StandardLogger()
		l.SetFormatter(unknownStatusFilter{l.Formatter})
	})
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
