package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"conveyor.dev/scanners/gitlabreport"
)

// Clair is a client of Clair v4's indexer and matcher HTTP API.
type Clair struct {
	URL    string // http://clair.clair.svc:6060
	Client *http.Client
}

type clairLayer struct {
	Hash    string              `json:"hash"`
	URI     string              `json:"uri"`
	Headers map[string][]string `json:"headers"`
}

type clairManifest struct {
	Hash   string       `json:"hash"`
	Layers []clairLayer `json:"layers"`
}

type indexReport struct {
	State   string `json:"state"`
	Success bool   `json:"success"`
	Err     string `json:"err"`
}

type clairPackage struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type clairVulnerability struct {
	Name               string       `json:"name"`
	Description        string       `json:"description"`
	Links              string       `json:"links"`
	NormalizedSeverity string       `json:"normalized_severity"`
	FixedInVersion     string       `json:"fixed_in_version"`
	Package            clairPackage `json:"package"`
}

type clairDistribution struct {
	DID       string `json:"did"`
	VersionID string `json:"version_id"`
}

// VulnerabilityReport is the part of Clair's vulnerability report a scan uses.
type VulnerabilityReport struct {
	Packages               map[string]clairPackage       `json:"packages"`
	Distributions          map[string]clairDistribution  `json:"distributions"`
	Vulnerabilities        map[string]clairVulnerability `json:"vulnerabilities"`
	PackageVulnerabilities map[string][]string           `json:"package_vulnerabilities"`
}

func (c *Clair) do(method, path string, body any, out any) error {
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, strings.TrimRight(c.URL, "/")+path, reader)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := c.Client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, res.Status, strings.TrimSpace(string(data)))
	}
	return json.Unmarshal(data, out)
}

// Index has Clair index the image (Clair fetches the layers itself, with the headers given)
// and waits for its answer.
func (c *Clair) Index(image Image, blobURL func(digest string) string, headers http.Header) error {
	m := clairManifest{Hash: image.Digest}
	for _, l := range image.Layers {
		m.Layers = append(m.Layers, clairLayer{Hash: l.Digest, URI: blobURL(l.Digest), Headers: headers})
	}
	var report indexReport
	if err := c.do(http.MethodPost, "/indexer/api/v1/index_report", m, &report); err != nil {
		return fmt.Errorf("indexing: %w", err)
	}
	if report.Err != "" || !report.Success || report.State != "IndexFinished" {
		return fmt.Errorf("indexing ended in state %s: %s", report.State, report.Err)
	}
	return nil
}

// Report reads the vulnerability report of an indexed manifest.
func (c *Clair) Report(digest string) (VulnerabilityReport, error) {
	var r VulnerabilityReport
	err := c.do(http.MethodGet, "/matcher/api/v1/vulnerability_report/"+digest, nil, &r)
	if err != nil {
		return r, fmt.Errorf("matching: %w", err)
	}
	return r, nil
}

// severity is Clair's normalized severity in Trivy's words, which `severities` uses.
func severity(s string) string {
	switch strings.ToLower(s) {
	case "critical":
		return "CRITICAL"
	case "high":
		return "HIGH"
	case "medium":
		return "MEDIUM"
	case "low", "negligible":
		return "LOW"
	default:
		return "UNKNOWN"
	}
}

// Findings are the report's vulnerabilities of the given severities (fixed ones only when
// ignoreUnfixed), one per package and vulnerability, in a stable order.
func Findings(r VulnerabilityReport, severities map[string]bool, ignoreUnfixed bool) []gitlabreport.Finding {
	seen := map[string]bool{}
	var out []gitlabreport.Finding
	for pkgID, vulnIDs := range r.PackageVulnerabilities {
		pkg := r.Packages[pkgID]
		for _, id := range vulnIDs {
			v, ok := r.Vulnerabilities[id]
			if !ok {
				continue
			}
			sev := severity(v.NormalizedSeverity)
			if !severities[sev] || (ignoreUnfixed && v.FixedInVersion == "") {
				continue
			}
			key := v.Name + "\x00" + pkg.Name + "\x00" + pkg.Version
			if seen[key] {
				continue
			}
			seen[key] = true
			link, _, _ := strings.Cut(v.Links, " ")
			out = append(out, gitlabreport.Finding{
				ID: v.Name, Severity: sev, Package: pkg.Name, InstalledVersion: pkg.Version,
				FixedVersion: v.FixedInVersion, Description: v.Description, Link: link,
			})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Severity != b.Severity {
			return a.Severity < b.Severity
		}
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.Package < b.Package
	})
	return out
}

// OperatingSystem is "debian 12" from the report's distributions, or "".
func OperatingSystem(r VulnerabilityReport) string {
	for _, d := range r.Distributions {
		if d.DID != "" {
			return strings.TrimSpace(d.DID + " " + d.VersionID)
		}
	}
	return ""
}
