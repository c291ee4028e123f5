// Command kube-testenv runs a real etcd (embedded) and a real kube-apiserver
// (in-process) on loopback, for tests: the approach controller-runtime calls
// envtest, in one small binary built from the upstream Go modules.
//
// It generates a CA, a serving certificate, an admin client certificate
// (O=system:masters) and service-account keys into --data-dir, writes
// <data-dir>/kubeconfig, starts etcd and the apiserver, waits until /readyz
// answers, and prints one line to stdout:
//
//	READY kubeconfig=<path> version=<vX.Y.Z> server=https://127.0.0.1:<port> etcd=http://127.0.0.1:<port> data-dir=<path>
//
// On failure it prints "ERROR <message>" to stdout and exits non-zero.
//
// It stops (apiserver, then etcd) when its standard input reaches EOF (so a
// parent that dies, however it dies, takes it down), on SIGTERM and on SIGINT.
// With --remove-data-dir it then deletes --data-dir. All logs go to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "time/tzdata" // for timeZone support in CronJob, as in kube-apiserver's main

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/rest"
	"k8s.io/component-base/cli/globalflag"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/component-base/featuregate"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // as in kube-apiserver's main
	_ "k8s.io/component-base/metrics/prometheus/version"  // as in kube-apiserver's main
	"k8s.io/component-base/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

type config struct {
	dataDir        string
	bindAddress    string
	etcdClientPort int
	etcdPeerPort   int
	securePort     int
	readyTimeout   time.Duration
	stopTimeout    time.Duration
	watchStdin     bool
	removeDataDir  bool
	extraArgs      []string
}

func main() {
	os.Exit(run())
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kube-testenv: "+format+"\n", args...)
}

func fail(format string, args ...any) int {
	msg := fmt.Sprintf(format, args...)
	logf("ERROR %s", msg)
	fmt.Fprintf(os.Stdout, "ERROR %s\n", strings.ReplaceAll(msg, "\n", " "))
	return 1
}

func parseFlags() (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("kube-testenv", flag.ContinueOnError)
	fs.StringVar(&c.dataDir, "data-dir", envOr("TESTENV_DATA_DIR", ""), "directory for etcd data, certificates and the kubeconfig (required; env TESTENV_DATA_DIR)")
	fs.StringVar(&c.bindAddress, "bind-address", envOr("TESTENV_BIND_ADDRESS", "127.0.0.1"), "address that etcd and the apiserver listen on (env TESTENV_BIND_ADDRESS)")
	fs.IntVar(&c.etcdClientPort, "etcd-client-port", envInt("TESTENV_ETCD_CLIENT_PORT", 0), "etcd client port; 0 picks a free one (env TESTENV_ETCD_CLIENT_PORT)")
	fs.IntVar(&c.etcdPeerPort, "etcd-peer-port", envInt("TESTENV_ETCD_PEER_PORT", 0), "etcd peer port; 0 picks a free one (env TESTENV_ETCD_PEER_PORT)")
	fs.IntVar(&c.securePort, "secure-port", envInt("TESTENV_SECURE_PORT", 0), "kube-apiserver secure port; 0 picks a free one (env TESTENV_SECURE_PORT)")
	fs.DurationVar(&c.readyTimeout, "ready-timeout", 120*time.Second, "give up when the apiserver is not ready after this long")
	fs.DurationVar(&c.stopTimeout, "stop-timeout", 5*time.Second, "how long each of apiserver and etcd may take to stop before the process exits anyway")
	fs.BoolVar(&c.watchStdin, "watch-stdin", true, "exit when standard input reaches EOF")
	fs.BoolVar(&c.removeDataDir, "remove-data-dir", false, "delete --data-dir when exiting")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: kube-testenv --data-dir DIR [flags] [-- extra kube-apiserver flags]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		return nil, err
	}
	c.extraArgs = fs.Args()
	if c.dataDir == "" {
		return nil, errors.New("--data-dir is required")
	}
	abs, err := filepath.Abs(c.dataDir)
	if err != nil {
		return nil, err
	}
	c.dataDir = abs
	return c, nil
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func envInt(key string, def int) int {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

func run() int {
	// Our stdout may be a pipe whose reader goes away; never die of SIGPIPE.
	signal.Ignore(syscall.SIGPIPE)

	cfg, err := parseFlags()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return fail("%v", err)
	}
	start := time.Now()

	// Stop on SIGTERM/SIGINT and on EOF of stdin.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigCh := make(chan os.Signal, 2)
	signal.Notify(sigCh, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sigCh
		logf("received %v, stopping", s)
		cancel()
		s = <-sigCh
		logf("received %v again, exiting now", s)
		os.Exit(1)
	}()
	if cfg.watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			logf("standard input closed, stopping")
			cancel()
		}()
	}

	code := serve(ctx, cfg, start)

	if cfg.removeDataDir {
		if err := os.RemoveAll(cfg.dataDir); err != nil {
			logf("removing %s: %v", cfg.dataDir, err)
		}
	}
	logf("exited after %v", time.Since(start).Round(time.Millisecond))
	return code
}

func serve(ctx context.Context, cfg *config, start time.Time) int {
	if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
		return fail("creating data dir: %v", err)
	}
	creds, err := generateCredentials(cfg.dataDir)
	if err != nil {
		return fail("generating credentials: %v", err)
	}

	// The apiserver's listener is opened here, so that port 0 picks a free
	// port without any race.
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.bindAddress, strconv.Itoa(cfg.securePort)))
	if err != nil {
		return fail("listening for kube-apiserver: %v", err)
	}
	apiPort := ln.Addr().(*net.TCPAddr).Port
	server := "https://" + net.JoinHostPort(cfg.bindAddress, strconv.Itoa(apiPort))

	etcd, etcdURL, err := startEtcd(cfg)
	if err != nil {
		_ = ln.Close()
		return fail("starting etcd: %v", err)
	}
	logf("etcd %s ready at %s after %v", etcdVersion(), etcdURL, time.Since(start).Round(time.Millisecond))
	defer stopEtcd(etcd, cfg.stopTimeout)

	kubeconfig := filepath.Join(cfg.dataDir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, server, creds); err != nil {
		_ = ln.Close()
		return fail("writing kubeconfig: %v", err)
	}

	apiCtx, apiCancel := context.WithCancel(ctx)
	defer apiCancel()
	apiDone := make(chan error, 1)
	go func() {
		apiDone <- runAPIServer(apiCtx, cfg, ln, apiPort, etcdURL, creds)
	}()

	ready := make(chan struct{})
	go func() {
		if waitReady(apiCtx, server, creds, cfg.readyTimeout) == nil {
			close(ready)
		}
	}()

	readyTimer := time.NewTimer(cfg.readyTimeout)
	defer readyTimer.Stop()
	select {
	case <-ready:
		logf("kube-apiserver %s ready at %s after %v", version.Get().GitVersion, server, time.Since(start).Round(time.Millisecond))
		fmt.Fprintf(os.Stdout, "READY kubeconfig=%s version=%s server=%s etcd=%s data-dir=%s\n",
			kubeconfig, version.Get().GitVersion, server, etcdURL, cfg.dataDir)
	case err := <-apiDone:
		return fail("kube-apiserver stopped before it was ready: %v", err)
	case <-readyTimer.C:
		apiCancel()
		waitStopped(apiDone, cfg.stopTimeout)
		return fail("kube-apiserver not ready after %v", cfg.readyTimeout)
	case <-ctx.Done():
		waitStopped(apiDone, cfg.stopTimeout)
		return fail("stopped before kube-apiserver was ready")
	}

	select {
	case <-ctx.Done():
		apiCancel()
		logf("stopping kube-apiserver")
		waitStopped(apiDone, cfg.stopTimeout)
		return 0
	case err := <-apiDone:
		logf("kube-apiserver stopped unexpectedly: %v", err)
		return 1
	}
}

func waitStopped(done <-chan error, timeout time.Duration) {
	select {
	case err := <-done:
		if err != nil {
			logf("kube-apiserver: %v", err)
		}
	case <-time.After(timeout):
		logf("kube-apiserver did not stop within %v; going on", timeout)
	}
}

// freePort asks the kernel for a free port on host.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startEtcd(cfg *config) (*embed.Etcd, string, error) {
	dir := filepath.Join(cfg.dataDir, "etcd")
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		clientPort, peerPort := cfg.etcdClientPort, cfg.etcdPeerPort
		var err error
		if clientPort == 0 {
			if clientPort, err = freePort(cfg.bindAddress); err != nil {
				return nil, "", err
			}
		}
		if peerPort == 0 {
			if peerPort, err = freePort(cfg.bindAddress); err != nil {
				return nil, "", err
			}
		}
		clientURL := "http://" + net.JoinHostPort(cfg.bindAddress, strconv.Itoa(clientPort))
		peerURL := "http://" + net.JoinHostPort(cfg.bindAddress, strconv.Itoa(peerPort))

		ec := embed.NewConfig()
		ec.Name = "testenv"
		ec.Dir = dir
		cu, _ := parseURL(clientURL)
		pu, _ := parseURL(peerURL)
		ec.ListenClientUrls = []urlT{cu}
		ec.AdvertiseClientUrls = []urlT{cu}
		ec.ListenPeerUrls = []urlT{pu}
		ec.AdvertisePeerUrls = []urlT{pu}
		ec.InitialCluster = ec.Name + "=" + peerURL
		ec.InitialClusterToken = "kube-testenv"
		ec.LogLevel = "error"
		ec.LogOutputs = []string{"stderr"}
		// A test database: durability across power loss does not matter.
		ec.UnsafeNoFsync = true
		ec.EnableGRPCGateway = false

		e, err := embed.StartEtcd(ec)
		if err != nil {
			lastErr = err
			inUse := strings.Contains(err.Error(), "address already in use")
			if inUse && (cfg.etcdClientPort == 0 || cfg.etcdPeerPort == 0) {
				logf("etcd ports clashed (%v); retrying", err)
				_ = os.RemoveAll(dir)
				continue
			}
			return nil, "", err
		}
		select {
		case <-e.Server.ReadyNotify():
			return e, clientURL, nil
		case err := <-e.Err():
			e.Close()
			return nil, "", err
		case <-time.After(60 * time.Second):
			e.Server.Stop()
			e.Close()
			return nil, "", errors.New("etcd not ready after 60s")
		}
	}
	return nil, "", lastErr
}

func stopEtcd(e *embed.Etcd, timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		e.Close()
		close(done)
	}()
	select {
	case <-done:
		logf("etcd stopped")
	case <-time.After(timeout):
		logf("etcd did not stop within %v; going on", timeout)
	}
}

// runAPIServer does what kube-apiserver's cobra command does, with our own
// context (so that we decide when it stops) and our own listener.
func runAPIServer(ctx context.Context, cfg *config, ln net.Listener, port int, etcdURL string, creds *credentials) error {
	s := options.NewServerRunOptions()
	featureGate := s.GenericServerRunOptions.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)

	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	namedFlagSets := s.Flags()
	globalflag.AddGlobalFlags(namedFlagSets.FlagSet("global"), "kube-apiserver", logs.SkipLoggingConfigurationFlags())
	for _, f := range namedFlagSets.FlagSets {
		fs.AddFlagSet(f)
	}

	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + cfg.bindAddress,
		"--advertise-address=" + cfg.bindAddress,
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(cfg.dataDir, "apiserver"),
		"--tls-cert-file=" + creds.servingCertFile,
		"--tls-private-key-file=" + creds.servingKeyFile,
		"--client-ca-file=" + creds.caCertFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + creds.saPubFile,
		"--service-account-signing-key-file=" + creds.saKeyFile,
		"--service-cluster-ip-range=10.0.0.0/24",
		// 1.37 refuses a loopback advertise address with an endpoint reconciler;
		// nothing here needs the endpoints of the "kubernetes" Service.
		"--endpoint-reconciler-type=none",
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		"--profiling=false",
	}
	args = append(args, cfg.extraArgs...)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("kube-apiserver flags: %w", err)
	}

	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	// As kube-apiserver does: its loopback clients should not log self-issued warnings.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	if err := logsapi.ValidateAndApply(s.Logs, featureGate); err != nil {
		return err
	}

	s.SecureServing.Listener = ln
	s.SecureServing.BindPort = port

	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return utilerrors.NewAggregate(errs)
	}
	featureGate.(featuregate.MutableFeatureGate).AddMetrics()
	s.GenericServerRunOptions.ComponentGlobalsRegistry.AddMetrics()
	return app.Run(ctx, completed)
}

func waitReady(ctx context.Context, server string, creds *credentials, timeout time.Duration) error {
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: creds.adminTLSConfig()},
		Timeout:   5 * time.Second,
	}
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, server+"/readyz", nil)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("timeout")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
