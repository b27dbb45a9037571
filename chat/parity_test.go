package chat

import (
	"os"
	"path/filepath"
	"testing"
)

const thirdParty = "../../shared/testdata/third_party/chat_templates"

func TestRendersJSON(t *testing.T) {
	path := filepath.Join(thirdParty, "renders.json")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("third-party chat templates not present (%v); skipping transformers parity", err)
	}
	cases, now, err := ReadRenders(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 48 {
		t.Errorf("got %d cases, want 48", len(cases))
	}
	tmpls := map[string]*Template{}
	for _, c := range cases {
		t.Run(c.Template+"/"+c.Conversation, func(t *testing.T) {
			tm, ok := tmpls[c.Template]
			if !ok {
				p := filepath.Join(thirdParty, c.Template+".jinja")
				src, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if tm, err = Parse(p, string(src)); err != nil {
					t.Fatal(err)
				}
				tmpls[c.Template] = tm
			}
			if d := c.Check(tm, now); d != "" {
				t.Error(d)
			}
		})
	}
}

func TestCheckRenders(t *testing.T) {
	path := filepath.Join(thirdParty, "renders.json")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("third-party chat templates not present (%v)", err)
	}
	res, err := CheckRenders(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 6 {
		t.Errorf("got %d results, want 6 (one per template)", len(res))
	}
	for _, r := range res {
		if !r.Pass || r.Metric != "mismatches" || r.Limit != 0 {
			t.Errorf("%+v", r)
		}
	}
}
