package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"conveyor.dev/scanners/gitlabreport"
)

func TestParseReference(t *testing.T) {
	digest := "sha256:" + strings.Repeat("a", 64)
	cases := map[string]Reference{
		"debian:bookworm-slim":                      {Host: "docker.io", Repository: "library/debian", Tag: "bookworm-slim"},
		"busybox":                                   {Host: "docker.io", Repository: "library/busybox", Tag: "latest"},
		"gcr.io/distroless/static:nonroot":          {Host: "gcr.io", Repository: "distroless/static", Tag: "nonroot"},
		"10.250.5.1:21460/library/debian@" + digest: {Host: "10.250.5.1:21460", Repository: "library/debian", Digest: digest},
		"localhost/app:1@" + digest:                 {Host: "localhost", Repository: "app", Tag: "1", Digest: digest},
		"team/app":                                  {Host: "docker.io", Repository: "team/app", Tag: "latest"},
	}
	for in, want := range cases {
		got, err := ParseReference(in)
		if err != nil || got != want {
			t.Errorf("ParseReference(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a b", "x@sha256:12"} {
		if _, err := ParseReference(bad); err == nil {
			t.Errorf("ParseReference(%q) accepted", bad)
		}
	}
}

func report() VulnerabilityReport {
	return VulnerabilityReport{
		Packages: map[string]clairPackage{
			"1": {Name: "zlib1g", Version: "1:1.2.13.dfsg-1"},
			"2": {Name: "libc6", Version: "2.36-9"},
		},
		Distributions: map[string]clairDistribution{"1": {DID: "debian", VersionID: "12"}},
		Vulnerabilities: map[string]clairVulnerability{
			"10": {Name: "CVE-2026-99001", NormalizedSeverity: "High", FixedInVersion: "1:1.2.13.dfsg-99",
				Links: "https://security-tracker.debian.org/tracker/CVE-2026-99001 https://example"},
			"11": {Name: "CVE-2026-99002", NormalizedSeverity: "Low"},
			"12": {Name: "CVE-2026-99003", NormalizedSeverity: "Critical"},
		},
		PackageVulnerabilities: map[string][]string{"1": {"10", "11"}, "2": {"12", "12"}},
	}
}

func TestFindingsFilterAndOrder(t *testing.T) {
	high := map[string]bool{"HIGH": true, "CRITICAL": true}
	got := Findings(report(), high, false)
	if len(got) != 2 || got[0].ID != "CVE-2026-99003" || got[1].ID != "CVE-2026-99001" {
		t.Fatalf("findings %+v", got)
	}
	if got[1].Link != "https://security-tracker.debian.org/tracker/CVE-2026-99001" || got[1].Package != "zlib1g" {
		t.Errorf("finding %+v", got[1])
	}
	if s := Summary(got); s != "CRITICAL=1 HIGH=1" {
		t.Errorf("summary %q", s)
	}
	// CVE-2026-99003 has no fix
	if got := Findings(report(), high, true); len(got) != 1 || got[0].ID != "CVE-2026-99001" {
		t.Errorf("ignoring unfixed: %+v", got)
	}
	if s := Summary(Findings(report(), map[string]bool{"MEDIUM": true}, false)); s != "none" {
		t.Errorf("summary %q", s)
	}
	if os := OperatingSystem(report()); os != "debian 12" {
		t.Errorf("os %q", os)
	}
	line := Line(got[1], "debian:bookworm-slim")
	if line != "HIGH CVE-2026-99001 zlib1g 1:1.2.13.dfsg-1 (fixed in 1:1.2.13.dfsg-99) in debian:bookworm-slim" {
		t.Errorf("line %q", line)
	}
}

// A registry serving an index whose amd64 manifest has one layer, behind basic auth.
func registryServer(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	image, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": mediaOCIManifest,
		"layers": []map[string]any{{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + strings.Repeat("b", 64)}},
	})
	sum := sha256.Sum256(image)
	imageDigest := "sha256:" + hex.EncodeToString(sum[:])
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": mediaOCIIndex,
		"manifests": []map[string]any{
			{"digest": "sha256:" + strings.Repeat("c", 64), "platform": map[string]string{"os": "linux", "architecture": "arm64"}},
			{"digest": imageDigest, "platform": map[string]string{"os": "linux", "architecture": "amd64"}},
		},
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "ci" || p != "pw" {
			w.Header().Set("WWW-Authenticate", `Basic realm="r"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/v2/":
		case "/v2/team/app/manifests/1.0":
			w.Header().Set("Content-Type", mediaOCIIndex)
			w.Write(index)
		case "/v2/team/app/manifests/" + imageDigest:
			w.Header().Set("Content-Type", mediaOCIManifest)
			w.Write(image)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, imageDigest
}

func TestResolveFollowsIndexWithCredentials(t *testing.T) {
	srv, imageDigest := registryServer(t)
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{"`+host+`":{"username":"ci","password":"pw"}}}`), 0o600)
	t.Setenv("DOCKER_CONFIG", dir)
	reg, err := NewRegistry(srv.Client(), host)
	if err != nil {
		t.Fatal(err)
	}
	if reg.Scheme != "http" {
		t.Errorf("scheme %s: the server answers plain HTTP", reg.Scheme)
	}
	img, err := reg.Resolve(Reference{Host: host, Repository: "team/app", Tag: "1.0"})
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != imageDigest || len(img.Layers) != 1 {
		t.Errorf("image %+v", img)
	}
	// A digest the registry's content does not match is refused.
	if _, err := reg.Resolve(Reference{Host: host, Repository: "team/app", Digest: "sha256:" + strings.Repeat("d", 64)}); err == nil {
		t.Error("a missing digest resolved")
	}
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if _, err := NewRegistry(srv.Client(), host); err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Errorf("without credentials: %v", err)
	}
}

func TestUnreachableClairExitsTwo(t *testing.T) {
	srv, imageDigest := registryServer(t)
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{"`+host+`":{"auth":"Y2k6cHc="}}}`), 0o600)
	term := filepath.Join(dir, "termination")
	t.Setenv("DOCKER_CONFIG", dir)
	t.Setenv("CONVEYOR_SCAN_IMAGE", host+"/team/app@"+imageDigest)
	t.Setenv("CONVEYOR_CLAIR_URL", "http://127.0.0.1:1")
	t.Setenv("CONVEYOR_TERMINATION_LOG", term)
	var out, errOut bytes.Buffer
	if code := run(&out, &errOut); code != 2 {
		t.Fatalf("exit %d, stderr %s", code, errOut.String())
	}
	msg, _ := os.ReadFile(term)
	if !strings.HasPrefix(string(msg), "the scan of "+host+"/team/app@"+imageDigest+" could not run: clair at http://127.0.0.1:1") {
		t.Errorf("termination message %q", msg)
	}
}

func TestFinishWritesReportAndExitCode(t *testing.T) {
	dir := t.TempDir()
	c := config{Image: "debian:bookworm-slim", Report: filepath.Join(dir, "gl.json"),
		TerminationLog: filepath.Join(dir, "term"), SeverityList: "HIGH"}
	findings := Findings(report(), map[string]bool{"HIGH": true}, false)
	var out, errOut bytes.Buffer
	if code := finish(c, gitlabreport.Scan{Image: c.Image}, findings, &out, &errOut); code != 1 {
		t.Fatalf("exit %d", code)
	}
	if msg, _ := os.ReadFile(c.TerminationLog); string(msg) != "HIGH=1" {
		t.Errorf("termination message %q", msg)
	}
	var gl gitlabreport.Report
	data, _ := os.ReadFile(c.Report)
	if err := json.Unmarshal(data, &gl); err != nil || len(gl.Vulnerabilities) != 1 || gl.Vulnerabilities[0].Severity != "High" {
		t.Errorf("report %s: %v", data, err)
	}
	if !strings.Contains(out.String(), "HIGH CVE-2026-99001 zlib1g") {
		t.Errorf("log %s", out.String())
	}
	out.Reset()
	if code := finish(c, gitlabreport.Scan{Image: c.Image}, nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d with no findings", code)
	}
	if msg, _ := os.ReadFile(c.TerminationLog); string(msg) != "none" {
		t.Errorf("termination message %q", msg)
	}
}
