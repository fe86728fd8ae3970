package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestConvert(t *testing.T) {
	in := `{"scanner": {"id": "trivy", "name": "Trivy", "vendor": "Aqua Security", "version": "0.74.0"},
	  "image": "reg/app@sha256:aa", "operatingSystem": "debian 12",
	  "start": "2026-11-30T07:00:00Z", "end": "2026-11-30T07:00:05Z",
	  "findings": [{"id": "CVE-2026-99001", "severity": "HIGH", "package": "zlib1g",
	    "installedVersion": "1:1.2.13.dfsg-1", "fixedVersion": "1:1.2.13.dfsg-99"}]}`
	var out bytes.Buffer
	if err := convert(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	var report map[string]any
	if err := json.Unmarshal(out.Bytes(), &report); err != nil {
		t.Fatal(err)
	}
	scan := report["scan"].(map[string]any)
	if scan["end_time"] != "2026-11-30T07:00:05" || scan["scanner"].(map[string]any)["id"] != "trivy" {
		t.Errorf("scan %v", scan)
	}
	v := report["vulnerabilities"].([]any)[0].(map[string]any)
	if v["severity"] != "High" || v["solution"] != "Upgrade zlib1g to 1:1.2.13.dfsg-99" {
		t.Errorf("vulnerability %v", v)
	}
	if err := convert(strings.NewReader("not json"), &out); err == nil {
		t.Error("bad input accepted")
	}
}
