package main

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestWaitsForAServiceThatStartsListeningLate(t *testing.T) {
	// A port that is free now, listened on a moment later (as a service that takes time to start).
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	started := make(chan net.Listener)
	go func() {
		time.Sleep(700 * time.Millisecond)
		l, err := net.Listen("tcp", probe.Addr().String())
		if err != nil {
			t.Error(err)
		}
		started <- l
	}()
	var out bytes.Buffer
	services, err := parseServices([]string{"web=" + itoa(port)})
	if err != nil {
		t.Fatal(err)
	}
	waitForServices(services, 10*time.Second, &out)
	(<-started).Close()
	if !strings.Contains(out.String(), "Service web is listening on port "+itoa(port)) {
		t.Fatalf("not waited for: %s", out.String())
	}
	if strings.Contains(out.String(), "WARNING") {
		t.Fatalf("warned: %s", out.String())
	}
}

func TestAServiceThatNeverListensIsAWarningAfterTheTimeout(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	var out bytes.Buffer
	began := time.Now()
	if err := run([]string{"wait-services", "1", "db=" + itoa(port)}, &out); err != nil {
		t.Fatalf("a service that does not start fails nothing: %v", err)
	}
	if waited := time.Since(began); waited < time.Second || waited > 5*time.Second {
		t.Fatalf("waited %s for a 1 s timeout", waited)
	}
	for _, want := range []string{
		"Waiting for services to be up and running (timeout 1 seconds)...",
		"*** WARNING: Service db probably didn't start properly.",
	} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("no %q in: %s", want, out.String())
		}
	}
}

func TestServicesAreNamePortPairs(t *testing.T) {
	for _, bad := range []string{"web", "=80"} {
		if _, err := parseServices([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// A value that is no port is the user's: a warning in the job's log, nothing waited for.
	var out bytes.Buffer
	if err := run([]string{"wait-services", "30", "web=http", "db=70000"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`*** WARNING: Service web is not checked: HEALTHCHECK_TCP_PORT is not a port: "http"`,
		`*** WARNING: Service db is not checked: HEALTHCHECK_TCP_PORT is not a port: "70000"`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in: %s", want, out.String())
		}
	}
	if err := run([]string{"wait-services", "soon", "web=80"}, &bytes.Buffer{}); err == nil {
		t.Error("a timeout that is not a number accepted")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
