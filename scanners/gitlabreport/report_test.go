package gitlabreport

import (
	"encoding/json"
	"regexp"
	"testing"
	"time"
)

func TestBuild(t *testing.T) {
	start := time.Date(2026, 11, 30, 7, 0, 0, 0, time.FixedZone("x", 3600))
	scan := Scan{
		Scanner: Scanner{ID: "clair", Name: "Clair", Vendor: "Project Quay", Version: "4.9.0"},
		Image:   "debian:bookworm-slim@sha256:aa", OperatingSystem: "debian 12",
		Start: start, End: start.Add(time.Minute),
	}
	f := Finding{ID: "CVE-2026-99001", Severity: "HIGH", Package: "zlib1g", InstalledVersion: "1:1.2.13.dfsg-1",
		FixedVersion: "1:1.2.13.dfsg-99", Link: "https://security-tracker.debian.org/tracker/CVE-2026-99001"}
	r := Build(scan, []Finding{f})
	if r.Scan.StartTime != "2026-11-30T06:00:00" || r.Scan.Type != "container_scanning" {
		t.Errorf("scan %+v", r.Scan)
	}
	v := r.Vulnerabilities[0]
	if v.Severity != "High" || v.Identifiers[0].Type != "cve" || v.Location.Dependency.Package.Name != "zlib1g" ||
		v.Solution != "Upgrade zlib1g to 1:1.2.13.dfsg-99" || v.Location.OperatingSystem != "debian 12" {
		t.Errorf("vulnerability %+v", v)
	}
	// The id is stable across scans of the same finding (GitLab tracks findings by it).
	again := Build(Scan{Scanner: scan.Scanner, Image: "debian:bookworm-slim@sha256:bb"}, []Finding{f})
	if again.Vulnerabilities[0].ID != v.ID || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(v.ID) {
		t.Errorf("ids %s %s", v.ID, again.Vulnerabilities[0].ID)
	}
	data, _ := json.Marshal(Build(scan, nil))
	var back map[string]any
	json.Unmarshal(data, &back)
	if vs, ok := back["vulnerabilities"].([]any); !ok || len(vs) != 0 {
		t.Errorf("no findings must give an empty list, got %s", data)
	}
	for in, want := range map[string]string{"CRITICAL": "Critical", "negligible": "Low", "UNKNOWN": "Unknown", "x": "Unknown"} {
		if got := Severity(in); got != want {
			t.Errorf("Severity(%q) = %q", in, got)
		}
	}
}
