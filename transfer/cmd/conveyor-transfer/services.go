package main

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A service to wait for: its container's name and the TCP port it should listen on (GitLab's
// HEALTHCHECK_TCP_PORT). Services share the pod's network, so it listens on localhost.
type service struct {
	name string
	port int
	bad  string // HEALTHCHECK_TCP_PORT as given when it is not a port: a warning
}

func parseServices(args []string) ([]service, error) {
	out := make([]service, 0, len(args))
	for _, arg := range args {
		name, port, ok := strings.Cut(arg, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("not NAME=PORT: %q", arg)
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			out = append(out, service{name: name, bad: port})
			continue
		}
		out = append(out, service{name: name, port: n})
	}
	return out, nil
}

// waitForServices does what GitLab's runner does before a job's script: wait until each
// service accepts a TCP connection on its port, at most timeout for all of them together. A
// service that never does is a warning, not a failure (the script may not need it yet), as in
// GitLab.
func waitForServices(services []service, timeout time.Duration, out io.Writer) {
	fmt.Fprintf(out, "Waiting for services to be up and running (timeout %d seconds)...\n",
		int(timeout.Seconds()))
	deadline := time.Now().Add(timeout)
	errs := make([]error, len(services))
	var wg sync.WaitGroup
	for i, s := range services {
		if s.bad != "" {
			errs[i] = fmt.Errorf("HEALTHCHECK_TCP_PORT is not a port: %q", s.bad)
			continue
		}
		wg.Add(1)
		go func(i int, s service) {
			defer wg.Done()
			errs[i] = dialUntil(net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)), deadline)
		}(i, s)
	}
	wg.Wait()
	for i, s := range services {
		if s.bad != "" {
			fmt.Fprintf(out, "\n*** WARNING: Service %s is not checked: %v\n\n", s.name, errs[i])
		} else if errs[i] != nil {
			fmt.Fprintf(out, "\n*** WARNING: Service %s probably didn't start properly.\n\n"+
				"Health check error:\nservice %q did not accept a connection on port %d: %v\n\n",
				s.name, s.name, s.port, errs[i])
		} else {
			fmt.Fprintf(out, "Service %s is listening on port %d\n", s.name, s.port)
		}
	}
}

func dialUntil(address string, deadline time.Time) error {
	for {
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return fmt.Errorf("timed out")
		}
		conn, err := net.DialTimeout("tcp", address, min(remaining, time.Second))
		if err == nil {
			conn.Close()
			return nil
		}
		if time.Until(deadline) <= 0 {
			return err
		}
		time.Sleep(min(200*time.Millisecond, time.Until(deadline)))
	}
}
