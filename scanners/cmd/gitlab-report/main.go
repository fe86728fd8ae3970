// gitlab-report: GitLab's container scanning report from a scan's findings, for scanners whose
// job is a shell script (Trivy's). Reads on stdin
//
//	{"scanner": {"id": "trivy", "name": "Trivy", "vendor": "Aqua Security", "version": "0.74.0"},
//	 "image": "reg/app@sha256:...", "operatingSystem": "debian 12",
//	 "start": "2026-11-30T07:00:00Z", "end": "2026-11-30T07:00:05Z",
//	 "findings": [{"id": "CVE-...", "severity": "HIGH", "package": "zlib1g", ...}]}
//
// and writes gl-container-scanning-report.json's content on stdout.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"conveyor.dev/scanners/gitlabreport"
)

type input struct {
	Scanner struct {
		ID, Name, Vendor, Version string
	} `json:"scanner"`
	Image           string                 `json:"image"`
	OperatingSystem string                 `json:"operatingSystem"`
	Start           time.Time              `json:"start"`
	End             time.Time              `json:"end"`
	Findings        []gitlabreport.Finding `json:"findings"`
}

func convert(r io.Reader, w io.Writer) error {
	var in input
	if err := json.NewDecoder(r).Decode(&in); err != nil {
		return fmt.Errorf("reading the findings: %w", err)
	}
	report := gitlabreport.Build(gitlabreport.Scan{
		Scanner: gitlabreport.Scanner{ID: in.Scanner.ID, Name: in.Scanner.Name, Vendor: in.Scanner.Vendor, Version: in.Scanner.Version},
		Image:   in.Image, OperatingSystem: in.OperatingSystem, Start: in.Start, End: in.End,
	}, in.Findings)
	return json.NewEncoder(w).Encode(report)
}

func main() {
	if err := convert(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gitlab-report:", err)
		os.Exit(2)
	}
}
