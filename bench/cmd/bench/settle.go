package main

import (
	"hash/maphash"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/shimkeeper/shimkeeper/layout"
)

// bundleWatch tells when the set of bundle dirs below a daemon's task
// state dir last changed, from the outside: it is sampled before exec and
// at every poll after it. The set is every <ns>/<id> name, dot-names
// included, so that a rename to a dot-name (stock's atomic delete) and the
// removal that follows are both changes; it is kept as a count and an
// order-free hash of the names. Reading 10000 names takes about 10 ms, as
// long as a poll, so a sample first stats the dirs and reads the names
// again only when one of them changed: an entry made, removed or renamed
// changes its dir's ctime (a dir removed, its link count as well).
type bundleWatch struct {
	dir   string // <state>/io.containerd.runtime.v2.task
	start time.Time
	dirs  map[string]dirStamp // the plugin dir and every ns dir, as last read
	n     int
	sum   uint64
	// changed is the time from exec to the first sample that saw the
	// current set (0: the set at exec). A change is seen at most one poll
	// (10 ms) after it happened.
	changed time.Duration
}

// dirStamp is what a change of a dir's entries changes in its stat.
type dirStamp struct {
	ino, nlink uint64
	ctime      syscall.Timespec
}

func stamp(dir string) dirStamp {
	var st syscall.Stat_t
	if syscall.Stat(dir, &st) != nil {
		return dirStamp{}
	}
	return dirStamp{ino: st.Ino, nlink: uint64(st.Nlink), ctime: st.Ctim}
}

var nameSeed = maphash.MakeSeed()

func newBundleWatch(state string) *bundleWatch {
	w := &bundleWatch{dir: layout.PluginDir(state, layout.TaskPluginDir)}
	w.read()
	return w
}

// read stamps the dirs, then counts and hashes the names.
func (w *bundleWatch) read() {
	w.dirs = map[string]dirStamp{w.dir: stamp(w.dir)}
	w.n, w.sum = 0, 0
	nss, _ := readNames(w.dir)
	for _, ns := range nss {
		d := filepath.Join(w.dir, ns)
		w.dirs[d] = stamp(d)
		ids, _ := readNames(d)
		for _, id := range append(ids, "") { // "": the namespace dir itself
			w.n++
			w.sum += maphash.String(nameSeed, ns+"/"+id)
		}
	}
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// sample records when the set last changed.
func (w *bundleWatch) sample() {
	same := true
	for d, st := range w.dirs {
		if stamp(d) != st {
			same = false
			break
		}
	}
	if same {
		return
	}
	n, sum := w.n, w.sum
	w.read()
	if w.n != n || w.sum != sum {
		w.changed = time.Since(w.start)
	}
}

// reportWatch reads our recovery report (loader.ReadReport) when its file
// changes, which is at most every 250 ms while the pass runs, and tells
// when it says background work finished.
type reportWatch struct {
	state   string
	path    string
	since   time.Time // a report started before this is a previous run's
	mod     time.Time
	size    int64
	done    bool
	finTime time.Time
}

func newReportWatch(state string, since time.Time) *reportWatch {
	return &reportWatch{state: state, path: layout.ReportPath(layout.PluginDir(state, layout.TaskPluginDir)), since: since}
}

// finished reports whether the report names this run's end of background
// work, and when that was.
func (rw *reportWatch) finished() (time.Time, bool) {
	if rw.done {
		return rw.finTime, true
	}
	fi, err := os.Stat(rw.path)
	if err != nil || (fi.ModTime().Equal(rw.mod) && fi.Size() == rw.size) {
		return time.Time{}, false
	}
	rw.mod, rw.size = fi.ModTime(), fi.Size()
	rep, err := readReport(rw.state)
	if err != nil || rep.StartedAt.Before(rw.since) || rep.Finished.IsZero() {
		return time.Time{}, false
	}
	rw.done, rw.finTime = true, rep.Finished
	return rep.Finished, true
}

// settle runs once every live task is listed (r.list): it keeps sampling
// the bundle set until the daemon has settled, then reads RSS. Stock does
// all its work before it serves, so it is sampled through the settle
// period (1 s after listed). Ours is sampled until its recovery report
// says background work finished (bounded by cleanupTimeout), and at least
// through the same settle period. settled is the latest of listed, the
// last change of the bundle set and, for ours, the report's finished_at;
// RSS is read 1 s after listed, or when settling ends if that is later.
func (b *bench) settle(d *daemon, r *runResult) {
	earliest := d.start.Add(r.list + settle)
	bound := d.start.Add(r.list + cleanupTimeout)
	var rw *reportWatch
	if d.name == "ours" {
		rw = newReportWatch(b.state, d.start)
	}
	var fin time.Duration
	for {
		d.watch.sample()
		done := rw == nil
		if rw != nil {
			if t, ok := rw.finished(); ok {
				done, fin = true, t.Sub(d.start)
			}
		}
		now := time.Now()
		if done && !now.Before(earliest) {
			break
		}
		if !now.Before(bound) {
			r.unsettled = true
			break
		}
		time.Sleep(pollInterval)
	}
	r.settled = max(r.list, d.watch.changed, fin)
	r.rssKiB = rssKiB(d.pid())
}
