package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotune/assets"
)

// `gotune data inspect` on a DPO config counts the pairs kept and those
// dropped because chosen equals rejected.
func TestDataInspectCountsPairs(t *testing.T) {
	modelDir, err := assets.ModelDir(assets.DefaultModel, filepath.Join(t.TempDir(), "model"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.jsonl"), []byte(
		`{"prompt":"Say hi","chosen":"Hello there!","rejected":"Go away."}`+"\n"+
			`{"prompt":"Say bye","chosen":"Goodbye!","rejected":"Goodbye!"}`+"\n"+
			`{"prompt":"Count","chosen":"One, two.","rejected":"No."}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	err = runData([]string{"inspect", "--model_name_or_path", modelDir, "--stage", "dpo", "--dataset", filepath.Join(dir, "p.jsonl"),
		"--near_dedup", "false"}, &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "pairs: 2 kept, 0 of them truncated to cutoff_len; dropped: 1 with chosen == rejected, 0 whose prompt fills cutoff_len") {
		t.Errorf("inspect output:\n%s", out.String())
	}
}
