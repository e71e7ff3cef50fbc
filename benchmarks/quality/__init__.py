"""Does it learn: probe F1 of pretrained encoders on synthetic and real scans."""
