package hfconfig

import (
	"encoding/json"
	"testing"
)

func TestTokenString(t *testing.T) {
	for _, c := range []struct {
		raw, want string
		err       bool
	}{
		{`null`, "", false}, {``, "", false}, {`"<|im_end|>"`, "<|im_end|>", false},
		{`{"content": "<s>", "lstrip": false}`, "<s>", false},
		{`{"lstrip": false}`, "", true}, {`42`, "", true},
	} {
		got, err := TokenString(json.RawMessage(c.raw))
		if got != c.want || (err != nil) != c.err {
			t.Errorf("TokenString(%s) = %q, %v", c.raw, got, err)
		}
	}
}
