package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"
)

// Plan is what the operator tells one job attempt (operator/conveyor/store/plan.py writes it).
type Plan struct {
	ProjectDir string       `json:"projectDir"`
	TempDir    string       `json:"tempDir"`
	Downloads  []Dependency `json:"downloads"`
	Artifacts  *Artifacts   `json:"artifacts"`
	Caches     []Cache      `json:"caches"`
	// TrackedFile lists the files git tracks (`git ls-files -z`, written by the checkout) for
	// `untracked: true`; empty: the pod checks nothing out, so git tracks nothing.
	TrackedFile string `json:"trackedFile"`
	CA          string `json:"ca"`       // PEM of the store's CA, when not a public one
	Insecure    bool   `json:"insecure"` // skip TLS verification (the operator's option)
	client      *http.Client
}

// Dependency is one earlier job's artifacts archive and the sha256 the operator recorded for
// it: an archive that does not match is not extracted, and fails the job.
type Dependency struct {
	Job    string `json:"job"`
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
}

// Artifacts is this job's own archive: what goes in it and where it goes.
type Artifacts struct {
	Name        string   `json:"name"`
	Paths       []string `json:"paths"`
	Untracked   bool     `json:"untracked"` // also every file git does not track (GitLab's untracked)
	Exclude     []string `json:"exclude"`
	When        string   `json:"when"`
	URL         string   `json:"url"`         // presigned PUT of the archive
	ManifestURL string   `json:"manifestUrl"` // presigned PUT of its manifest
	MaxBytes    int64    `json:"maxBytes"`
}

// Cache is one of the job's caches: keys to try in order, and the key to push.
type Cache struct {
	Paths     []string   `json:"paths"`
	Untracked bool       `json:"untracked"`
	Pull      []CacheKey `json:"pull"`
	Push      *CacheKey  `json:"push"`
	When      string     `json:"when"`
}

type CacheKey struct {
	Key string `json:"key"`
	URL string `json:"url"`
}

// Manifest is what the operator reads back after the job: the archive's size and digest.
type Manifest struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Files  int    `json:"files"`
}

// ReadPlan reads the plan from the file $CONVEYOR_TRANSFER_PLAN_FILE names (a Secret's key,
// mounted: the plan's URLs are never in the pod's spec).
func ReadPlan() (*Plan, error) {
	file := os.Getenv(PlanVariable)
	if file == "" {
		return nil, fmt.Errorf("no transfer plan: $%s is empty", PlanVariable)
	}
	text, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("no transfer plan: %w", err)
	}
	return ParsePlan(string(text))
}

func ParsePlan(text string) (*Plan, error) {
	if text == "" {
		return nil, fmt.Errorf("no transfer plan: the plan is empty")
	}
	var p Plan
	if err := json.Unmarshal([]byte(text), &p); err != nil {
		return nil, fmt.Errorf("the transfer plan is not valid JSON: %w", err)
	}
	if p.ProjectDir == "" {
		return nil, fmt.Errorf("the transfer plan has no projectDir")
	}
	for _, d := range p.Downloads {
		if len(d.SHA256) != 64 {
			return nil, fmt.Errorf("the transfer plan gives no sha256 for the artifacts of job %s", d.Job)
		}
	}
	if p.TempDir == "" {
		p.TempDir = os.TempDir()
	}
	tlsConfig := &tls.Config{InsecureSkipVerify: p.Insecure} //nolint:gosec // the operator's choice
	if p.CA != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(p.CA)) {
			return nil, fmt.Errorf("the transfer plan's CA is not PEM")
		}
		tlsConfig.RootCAs = pool
	}
	p.client = &http.Client{
		Timeout:   30 * time.Minute,
		Transport: &http.Transport{TLSClientConfig: tlsConfig, Proxy: http.ProxyFromEnvironment},
	}
	return &p, nil
}
