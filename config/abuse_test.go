package config

import (
	"strings"
	"testing"
)

// TestHostileYAML: deep nesting, alias bombs and huge values in a config
// file end in an error naming the file, not a crash.
func TestHostileYAML(t *testing.T) {
	laughs := "a: &a [x, x, x, x, x, x, x, x, x]\n"
	for i := 'b'; i <= 'k'; i++ {
		laughs += string(i) + ": &" + string(i) + " [*" + string(i-1) + ", *" + string(i-1) + ", *" + string(i-1) + ", *" + string(i-1) + "]\n"
	}
	cases := map[string]string{
		"deep flow":     "dataset: " + strings.Repeat("[", 1<<20) + strings.Repeat("]", 1<<20) + "\n",
		"deep block":    "dataset:\n  " + strings.Repeat("- ", 20000) + "x\n",
		"alias bomb":    laughs + "dataset: *k\n",
		"deep mapping":  "lora_target: " + strings.Repeat("{a: ", 50000) + "1" + strings.Repeat("}", 50000) + "\n",
		"huge integer":  "lora_rank: 99999999999999999999999999\n",
		"binary junk":   "\x00\xff\xfe: \x01\n",
		"tab indented":  "model_name_or_path: x\n\tlora_rank: 8\n",
		"list for text": "output_dir: [a, b]\n",
	}
	for name, src := range cases {
		_, err := Parse([]byte(src), "hostile.yaml")
		if err == nil || !strings.Contains(err.Error(), "hostile.yaml") {
			t.Errorf("%s: got %v, want an error naming hostile.yaml", name, err)
		}
	}
}
