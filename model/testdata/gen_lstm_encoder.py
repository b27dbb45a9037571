# Generates lstm_encoder.json: torch's bidirectional nn.LSTM followed by the
# Linear-ReLU-Linear head, as PEFT's P-tuning LSTM encoder builds them, run in
# float64 on fixed weights; the output and the gradients of sum(R * output).
# Run with a Python that has torch: /usr/bin/python3 gen_lstm_encoder.py
import json
import torch

torch.manual_seed(0)
P, D, H, L = 3, 16, 3, 2
emb = torch.nn.Embedding(P, D).double()
lstm = torch.nn.LSTM(input_size=D, hidden_size=H, num_layers=L, bidirectional=True, batch_first=True).double()
head = torch.nn.Sequential(torch.nn.Linear(2 * H, 2 * H), torch.nn.ReLU(), torch.nn.Linear(2 * H, D)).double()
# Round every weight to float32 so the Go side holds exactly the same values.
mods = {"embedding": emb, "lstm_head": lstm, "mlp_head": head}
with torch.no_grad():
    for m in mods.values():
        for p in m.parameters():
            p.copy_(p.float().double())
R = torch.randn(P, D, dtype=torch.float64)
out = head(lstm(emb(torch.arange(P)).unsqueeze(0))[0])[0]
(out * R).sum().backward()
params, grads = {}, {}
for prefix, m in mods.items():
    for n, p in m.named_parameters():
        name = "prompt_encoder.default." + prefix + "." + n
        params[name] = p.detach().flatten().tolist()
        grads[name] = p.grad.flatten().tolist()
json.dump({"virtual": P, "token_dim": D, "hidden": H, "layers": L, "params": params,
           "R": R.flatten().tolist(), "output": out.detach().flatten().tolist(), "grads": grads},
          open("lstm_encoder.json", "w"))
