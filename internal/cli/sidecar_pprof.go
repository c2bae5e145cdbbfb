package cli

import (
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/spf13/cobra"
)

// addSidecarPprof adds the opt-in debug flag --pprof ADDR to `gatehouse sidecar`: while the sidecar
// runs, Go's profiles (net/http/pprof) are served on ADDR, for the benchmarks in bench/ and for
// finding where a sidecar spends its time. It is off unless given, and has no authentication, so
// bind it to loopback.
func addSidecarPprof(e *env, cmd *cobra.Command) {
	var addr string
	cmd.Flags().StringVar(&addr, "pprof", "", "debugging: serve Go profiles (/debug/pprof/) on this address, like 127.0.0.1:6060; no authentication, keep it on loopback")
	run := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if addr == "" {
			return run(cmd, args)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return usageErrorf("--pprof %s: %v", addr, err)
		}
		// Its own mux: nothing is served from http.DefaultServeMux.
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		served := make(chan struct{})
		go func() {
			defer close(served)
			_ = srv.Serve(ln)
		}()
		defer func() {
			_ = srv.Close()
			<-served
		}()
		e.logger().Warn("serving Go profiles for debugging; turn --pprof off in production", "component", "sidecar/pprof", "addr", ln.Addr().String())
		return run(cmd, args)
	}
}
