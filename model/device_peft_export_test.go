package model

import "testing"

// PromptEncoderPass runs dm's prompt encoder alone (the virtual tokens',
// or else the KV prefix's) and returns its output [rows, width]; with dout
// it then takes dout, the gradient of that output, back through the
// encoder into the gradients Grad reads. The external tests check the
// device encoder against torch and finite differences this way.
func PromptEncoderPass(t testing.TB, dm *DeviceModel, dout []float32) []float32 {
	t.Helper()
	var e *dencoder
	if dm.peft != nil {
		e = dm.peft.virt
		if e == nil {
			e = dm.peft.prefix
		}
	}
	if e == nil {
		t.Fatal("the device model has no prompt encoder")
	}
	y := dm.encode(e)
	out := make([]float32, e.rows*e.width)
	if err := dm.be.Download(out, y); err != nil {
		t.Fatal(err)
	}
	if dout == nil {
		return out
	}
	if len(dout) != len(out) {
		t.Fatalf("output gradient of %d values for an output of %d", len(dout), len(out))
	}
	d := dm.buf("test_dout", dm.act, len(dout))
	if d == nil {
		t.Fatal(dm.err())
	}
	dm.be.Upload(d, dout)
	dm.encodeBackward(e, d)
	if err := dm.err(); err != nil {
		t.Fatal(err)
	}
	return out
}
