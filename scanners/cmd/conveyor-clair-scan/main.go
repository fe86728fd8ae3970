// conveyor-clair-scan: a Conveyor `scan` job with Clair v4. It resolves the image's manifest in
// its registry, has Clair's indexer index it (Clair fetches the layers from the registry),
// reads Clair's vulnerability report and fails on the findings of the chosen severities, as the
// Trivy scan does: one finding a line in the log, the count per severity as the termination
// message (`HIGH=1`, or `none`), gl-container-scanning-report.json in the working directory.
//
// Exit codes: 0 no findings, 1 findings, 2 the scan could not run (Clair or the registry
// unreachable, the image missing, ...).
//
// Environment: CONVEYOR_SCAN_IMAGE, CONVEYOR_SCAN_SEVERITIES (comma-separated),
// CONVEYOR_SCAN_IGNORE_UNFIXED (true/false), CONVEYOR_CLAIR_URL, DOCKER_CONFIG (registry
// credentials), CONVEYOR_SCAN_REPORT (report path), CONVEYOR_TERMINATION_LOG.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"conveyor.dev/scanners/gitlabreport"
)

// Version of Clair the client speaks to (reported as the scanner's version).
const clairVersion = "4.9.0"

type config struct {
	Image, ClairURL, Report, TerminationLog string
	Severities                              map[string]bool
	SeverityList                            string
	IgnoreUnfixed                           bool
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func loadConfig() (config, error) {
	c := config{
		Image:          os.Getenv("CONVEYOR_SCAN_IMAGE"),
		ClairURL:       os.Getenv("CONVEYOR_CLAIR_URL"),
		Report:         env("CONVEYOR_SCAN_REPORT", "gl-container-scanning-report.json"),
		TerminationLog: env("CONVEYOR_TERMINATION_LOG", "/dev/termination-log"),
		SeverityList:   env("CONVEYOR_SCAN_SEVERITIES", "HIGH,CRITICAL"),
		IgnoreUnfixed:  os.Getenv("CONVEYOR_SCAN_IGNORE_UNFIXED") == "true",
		Severities:     map[string]bool{},
	}
	for _, s := range strings.Split(c.SeverityList, ",") {
		if s = strings.TrimSpace(strings.ToUpper(s)); s != "" {
			c.Severities[s] = true
		}
	}
	switch {
	case c.Image == "":
		return c, fmt.Errorf("CONVEYOR_SCAN_IMAGE is not set")
	case c.ClairURL == "":
		return c, fmt.Errorf("no Clair URL (the operator's --clair-url)")
	}
	return c, nil
}

// Summary is the termination message: the count per severity, `none` when nothing was found.
func Summary(findings []gitlabreport.Finding) string {
	counts := map[string]int{}
	for _, f := range findings {
		counts[f.Severity]++
	}
	if len(counts) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, counts[k])
	}
	return strings.Join(parts, " ")
}

// Line is one finding in the log, as the Trivy scan prints it.
func Line(f gitlabreport.Finding, image string) string {
	s := fmt.Sprintf("%s %s %s %s", f.Severity, f.ID, f.Package, f.InstalledVersion)
	if f.FixedVersion != "" {
		s += " (fixed in " + f.FixedVersion + ")"
	}
	return s + " in " + image
}

func httpClient(timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DialContext: dialer.DialContext, TLSHandshakeTimeout: 10 * time.Second},
	}
}

// scan returns the findings and what was scanned; an error means the scan could not run.
func scan(c config, stdout io.Writer) ([]gitlabreport.Finding, gitlabreport.Scan, error) {
	meta := gitlabreport.Scan{
		Scanner: gitlabreport.Scanner{ID: "clair", Name: "Clair", Vendor: "Project Quay", Version: clairVersion},
		Image:   c.Image,
		Start:   time.Now(),
	}
	ref, err := ParseReference(c.Image)
	if err != nil {
		return nil, meta, err
	}
	reg, err := NewRegistry(httpClient(30*time.Second), ref.Host)
	if err != nil {
		return nil, meta, err
	}
	image, err := reg.Resolve(ref)
	if err != nil {
		return nil, meta, err
	}
	fmt.Fprintf(stdout, "scanning %s (manifest %s, %d layers) with Clair at %s\n", c.Image, image.Digest, len(image.Layers), c.ClairURL)
	// Indexing fetches and unpacks every layer: minutes for a large image.
	clair := &Clair{URL: c.ClairURL, Client: httpClient(10 * time.Minute)}
	blob := func(d string) string { return reg.BlobURL(ref.Repository, d) }
	if err := clair.Index(image, blob, reg.Headers); err != nil {
		return nil, meta, fmt.Errorf("clair at %s: %w", c.ClairURL, err)
	}
	report, err := clair.Report(image.Digest)
	if err != nil {
		return nil, meta, fmt.Errorf("clair at %s: %w", c.ClairURL, err)
	}
	meta.OperatingSystem = OperatingSystem(report)
	meta.End = time.Now()
	return Findings(report, c.Severities, c.IgnoreUnfixed), meta, nil
}

func writeReport(path string, meta gitlabreport.Scan, findings []gitlabreport.Finding) ([]byte, error) {
	data, err := json.Marshal(gitlabreport.Build(meta, findings))
	if err != nil {
		return nil, err
	}
	return data, os.WriteFile(path, append(data, '\n'), 0o644)
}

func run(stdout, stderr io.Writer) int {
	c, err := loadConfig()
	if err == nil {
		var findings []gitlabreport.Finding
		var meta gitlabreport.Scan
		findings, meta, err = scan(c, stdout)
		if err == nil {
			return finish(c, meta, findings, stdout, stderr)
		}
	}
	msg := fmt.Sprintf("the scan of %s could not run: %v", c.Image, err)
	fmt.Fprintln(stderr, msg)
	_ = os.WriteFile(c.TerminationLog, []byte(msg), 0o644)
	return 2
}

func finish(c config, meta gitlabreport.Scan, findings []gitlabreport.Finding, stdout, stderr io.Writer) int {
	for _, f := range findings {
		fmt.Fprintln(stdout, Line(f, c.Image))
	}
	// Conveyor keeps no artifacts: the report is in the working directory and, for whoever
	// collects it, in the log between these lines.
	data, err := writeReport(c.Report, meta, findings)
	if err != nil {
		msg := fmt.Sprintf("the scan of %s could not run: writing %s: %v", c.Image, c.Report, err)
		fmt.Fprintln(stderr, msg)
		_ = os.WriteFile(c.TerminationLog, []byte(msg), 0o644)
		return 2
	}
	fmt.Fprintf(stdout, "--- %s ---\n%s\n--- end ---\n", c.Report, data)
	summary := Summary(findings)
	_ = os.WriteFile(c.TerminationLog, []byte(summary), 0o644)
	if len(findings) > 0 {
		fmt.Fprintf(stderr, "%s: %s\n", c.Image, summary)
		return 1
	}
	fmt.Fprintf(stdout, "%s: no %s vulnerabilities\n", c.Image, c.SeverityList)
	return 0
}

func main() {
	os.Exit(run(os.Stdout, os.Stderr))
}
