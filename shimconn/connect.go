// Package shimconn dials a shim at the address it advertised, over ttrpc
// or grpc, bounded by the caller's context, and runs a hook exactly once
// when the connection ends, locally or remotely. It touches nothing on
// disk.
package shimconn

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/log"
	"github.com/containerd/otelttrpc"
	"github.com/containerd/ttrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/containerd/containerd/v2/pkg/dialer"
	"github.com/containerd/containerd/v2/pkg/shim"
)

// Dial dials a shim address, bounded by ctx (stock's dial ignores the
// caller and waits up to 100 s). Address forms, as pkg/shim reads them:
// unix://<path> is a filesystem socket; an address with no scheme is the
// abstract socket "\x00<address>" (pre-1.5 shims); vsock:// and hvsock://
// go through pkg/shim's dialer with the time left on ctx.
func Dial(ctx context.Context, address string) (net.Conn, error) {
	proto, rest, ok := strings.Cut(address, "://")
	var d net.Dialer
	switch {
	case !ok:
		return d.DialContext(ctx, "unix", "\x00"+address)
	case proto == "unix":
		return d.DialContext(ctx, "unix", rest)
	case proto == "vsock" || proto == "hvsock":
		budget := 10 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			budget = time.Until(dl)
		}
		return shim.AnonDialer(address, budget)
	default:
		return nil, fmt.Errorf("unsupported protocol: %s", proto)
	}
}

// Conn is a connection to a shim whose close, local or remote, runs
// the onClose hook exactly once; UserOnCloseWait waits for that hook.
type Conn interface {
	Close() error
	UserOnCloseWait(ctx context.Context) error
}

// Connect opens a client for params: a *ttrpc.Client, or a *grpcConn for
// protocol grpc. onClose runs when the connection ends.
func Connect(ctx context.Context, params *bootapi.BootstrapResult, onClose func()) (client any, conn Conn, err error) {
	log.G(ctx).WithFields(log.Fields{
		"address":  params.Address,
		"protocol": params.Protocol,
		"version":  params.Version,
	}).Debug("connecting to shim")
	switch strings.ToLower(params.Protocol) {
	case "ttrpc":
		c, err := Dial(ctx, params.Address)
		if err != nil {
			return nil, nil, fmt.Errorf("failed to create TTRPC connection: %w", err)
		}
		tc := ttrpc.NewClient(c,
			ttrpc.WithOnClose(onClose),
			ttrpc.WithUnaryClientInterceptor(otelttrpc.UnaryClientInterceptor()),
		)
		return tc, tc, nil
	case "grpc":
		gc, err := dialGRPC(ctx, params.Address, onClose)
		if err != nil {
			return nil, nil, err
		}
		return gc.ClientConn, gc, nil
	default:
		return nil, nil, fmt.Errorf("unexpected protocol: %q", params.Protocol)
	}
}

// grpcConn gives a grpc client ttrpc's close semantics. Unlike stock, an
// Idle channel is not a closed one: a new grpc client starts Idle and grpc
// idles a channel after 30 minutes, and either would otherwise run `shim
// delete` on a live shim. The hook runs on our own Close, or when the
// channel fails and the shim's socket no longer accepts connections.
type grpcConn struct {
	*grpc.ClientConn
	address string
	once    sync.Once
	done    chan struct{}
	onClose func()
}

func dialGRPC(ctx context.Context, address string, onClose func()) (*grpcConn, error) {
	// Fail fast on a dead socket: grpc would keep retrying it.
	if err := UnixAccepts(ctx, address); err != nil {
		return nil, fmt.Errorf("failed to create GRPC connection: %w", err)
	}
	cc, err := grpc.NewClient(dialer.DialAddress(address),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
	)
	if err != nil {
		return nil, fmt.Errorf("failed to create GRPC connection: %w", err)
	}
	g := &grpcConn{ClientConn: cc, address: address, done: make(chan struct{}), onClose: onClose}
	cc.Connect()
	go g.watch()
	return g, nil
}

func (g *grpcConn) watch() {
	ctx := context.Background()
	state := g.GetState()
	for g.WaitForStateChange(ctx, state) {
		state = g.GetState()
		switch state {
		case connectivity.Shutdown:
			g.fire()
			return
		case connectivity.TransientFailure:
			dctx, cancel := context.WithTimeout(ctx, time.Second)
			err := UnixAccepts(dctx, g.address)
			cancel()
			if err != nil {
				g.ClientConn.Close()
				g.fire()
				return
			}
		}
	}
	g.fire()
}

// UnixAccepts dials the unix socket at path and hangs up: it tells a
// listening socket from a stale one.
func UnixAccepts(ctx context.Context, path string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

func (g *grpcConn) fire() {
	g.once.Do(func() {
		g.onClose()
		close(g.done)
	})
}

func (g *grpcConn) UserOnCloseWait(ctx context.Context) error {
	select {
	case <-g.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
