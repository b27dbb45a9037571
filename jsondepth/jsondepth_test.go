package jsondepth

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	deep := strings.Repeat("[", 300) + strings.Repeat("]", 300)
	cases := []struct {
		in      string
		tooDeep bool
	}{
		{`{"a": [1, {"b": 2}]}`, false},
		{deep, true},
		{`{"s": "` + strings.Repeat("[", 1000) + `"}`, false}, // brackets inside a string do not count
		{`{"s": "\"` + strings.Repeat("{", 1000) + `"}`, false},
		{strings.Repeat(`{"a":`, Default) + "1" + strings.Repeat("}", Default), false},
		{strings.Repeat(`{"a":`, Default+1) + "1" + strings.Repeat("}", Default+1), true},
	}
	for _, c := range cases {
		err := Check([]byte(c.in), Default)
		var de *Error
		if got := errors.As(err, &de); got != c.tooDeep {
			t.Errorf("%.40q: got %v, want too deep %v", c.in, err, c.tooDeep)
		}
		if !c.tooDeep && !json.Valid([]byte(c.in)) {
			t.Errorf("%.40q: test case is not valid JSON", c.in)
		}
	}
	if err := Check([]byte(deep), Default); err == nil || !strings.Contains(err.Error(), "deeper than 256") {
		t.Errorf("message: %v", err)
	}
}
