// Package gitlabreport turns a scan's findings into GitLab's container scanning report
// (gl-container-scanning-report.json, schema 15.x), whichever scanner found them.
package gitlabreport

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// SchemaVersion is the version of GitLab's security report schema the report follows.
const SchemaVersion = "15.0.7"

// Finding is one vulnerability of one package, as any scanner reports it.
type Finding struct {
	ID               string `json:"id"`       // CVE-2026-99001
	Severity         string `json:"severity"` // UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL
	Package          string `json:"package"`
	InstalledVersion string `json:"installedVersion"`
	FixedVersion     string `json:"fixedVersion,omitempty"`
	Description      string `json:"description,omitempty"`
	Link             string `json:"link,omitempty"`
}

// Scanner names the tool that found the findings.
type Scanner struct {
	ID, Name, Vendor, Version string
}

// Scan is what was scanned, when and by what.
type Scan struct {
	Scanner         Scanner
	Image           string // the image reference, by digest when known
	OperatingSystem string // "debian 12", empty when unknown
	Start, End      time.Time
}

type vendor struct {
	Name string `json:"name"`
}

type tool struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Vendor  vendor `json:"vendor"`
	Version string `json:"version"`
}

type scanSection struct {
	Analyzer  tool   `json:"analyzer"`
	Scanner   tool   `json:"scanner"`
	Type      string `json:"type"`
	StartTime string `json:"start_time"`
	EndTime   string `json:"end_time"`
	Status    string `json:"status"`
}

type identifier struct {
	Type  string `json:"type"`
	Name  string `json:"name"`
	Value string `json:"value"`
	URL   string `json:"url,omitempty"`
}

type link struct {
	URL string `json:"url"`
}

type dependency struct {
	Package struct {
		Name string `json:"name"`
	} `json:"package"`
	Version string `json:"version"`
}

type location struct {
	Dependency      dependency `json:"dependency"`
	OperatingSystem string     `json:"operating_system"`
	Image           string     `json:"image"`
}

// Vulnerability is one entry of the report's `vulnerabilities`.
type Vulnerability struct {
	ID          string       `json:"id"`
	Name        string       `json:"name"`
	Description string       `json:"description,omitempty"`
	Severity    string       `json:"severity"`
	Solution    string       `json:"solution,omitempty"`
	Location    location     `json:"location"`
	Identifiers []identifier `json:"identifiers"`
	Links       []link       `json:"links,omitempty"`
}

// Report is gl-container-scanning-report.json.
type Report struct {
	Version         string          `json:"version"`
	Scan            scanSection     `json:"scan"`
	Vulnerabilities []Vulnerability `json:"vulnerabilities"`
	Remediations    []any           `json:"remediations"`
}

// GitLab's schema wants times without a zone, in UTC.
const timeFormat = "2006-01-02T15:04:05"

// Severity is GitLab's spelling of a scanner's severity (Info, Unknown, Low, Medium, High,
// Critical).
func Severity(s string) string {
	switch strings.ToUpper(s) {
	case "CRITICAL":
		return "Critical"
	case "HIGH":
		return "High"
	case "MEDIUM":
		return "Medium"
	case "LOW", "NEGLIGIBLE":
		return "Low"
	case "INFO":
		return "Info"
	default:
		return "Unknown"
	}
}

func identifierOf(id, url string) identifier {
	kind := "cve"
	if !strings.HasPrefix(strings.ToUpper(id), "CVE-") {
		kind = strings.ToLower(strings.SplitN(id, "-", 2)[0])
	}
	return identifier{Type: kind, Name: id, Value: id, URL: url}
}

// Build is the report of findings; the same findings always give the same vulnerability ids.
func Build(scan Scan, findings []Finding) Report {
	t := tool{ID: scan.Scanner.ID, Name: scan.Scanner.Name, Vendor: vendor{scan.Scanner.Vendor}, Version: scan.Scanner.Version}
	r := Report{
		Version: SchemaVersion,
		Scan: scanSection{
			Analyzer: t, Scanner: t, Type: "container_scanning",
			StartTime: scan.Start.UTC().Format(timeFormat), EndTime: scan.End.UTC().Format(timeFormat),
			Status: "success",
		},
		Vulnerabilities: []Vulnerability{},
		Remediations:    []any{},
	}
	image := strings.SplitN(scan.Image, "@", 2)[0] // GitLab tracks findings per image name
	for _, f := range findings {
		sum := sha256.Sum256([]byte(strings.Join([]string{scan.Scanner.ID, image, f.ID, f.Package, f.InstalledVersion}, "\x00")))
		v := Vulnerability{
			ID:          hex.EncodeToString(sum[:16]),
			Name:        f.ID,
			Description: f.Description,
			Severity:    Severity(f.Severity),
			Identifiers: []identifier{identifierOf(f.ID, f.Link)},
		}
		if f.FixedVersion != "" {
			v.Solution = "Upgrade " + f.Package + " to " + f.FixedVersion
		}
		if f.Link != "" {
			v.Links = []link{{URL: f.Link}}
		}
		v.Location.Dependency.Package.Name = f.Package
		v.Location.Dependency.Version = f.InstalledVersion
		v.Location.OperatingSystem = scan.OperatingSystem
		v.Location.Image = scan.Image
		r.Vulnerabilities = append(r.Vulnerabilities, v)
	}
	return r
}
