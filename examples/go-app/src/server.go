// A small HTTP server, as in the article Conveyor comes from: health and readiness checks,
// graceful shutdown, and a metrics endpoint.
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

var requests atomic.Int64

func handler(w http.ResponseWriter, r *http.Request) {
	requests.Add(1)
	fmt.Fprintf(w, "Hello from go-app %s\n", os.Getenv("VERSION"))
}

func healthz(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }

func metrics(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "go_app_requests_total %d\n", requests.Load())
}

func newMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/", handler)
	mux.HandleFunc("/healthz", healthz)
	mux.HandleFunc("/readyz", healthz)
	mux.HandleFunc("/metrics", metrics)
	return mux
}

func main() {
	srv := &http.Server{Addr: ":8080", Handler: newMux(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}
