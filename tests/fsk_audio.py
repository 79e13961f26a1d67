"""A 4FSK transmission as an SSB receiver's audio: what horus-gui's modem listens to.

An SSB (USB) receiver tuned a little below the carrier turns each RF frequency into an audio
tone at its offset from the dial; `render_steps` takes the carrier's frequency steps as a
transmitter made them (RF Hz, seconds) and writes that audio, phase-continuous as a synthesiser
stepping its frequency is, as 16-bit little-endian mono PCM; `render_tones` does the same from
tone numbers. Gaussian noise (a fraction of full scale) makes the modem earn its sync.
"""

from __future__ import annotations

import math

import numpy as np

_FULL_SCALE = 8000  # peak of the tone in the 16-bit samples: room for the noise


def render_steps(steps: list[tuple[float, float]], *, dial_hz: float, sample_rate: int = 48000,
                 lead_s: float = 0.5, tail_s: float = 1.0, noise: float = 0.0, seed: int = 0) -> bytes:
    """Audio of `steps` ((RF frequency Hz, seconds) each) heard on USB with the dial at `dial_hz`."""
    parts = [np.zeros(int(lead_s * sample_rate))]
    phase = 0.0
    owed = 0.0  # fractions of a sample carried between steps, so the timing does not drift
    for freq, seconds in steps:
        owed += seconds * sample_rate
        n = int(owed)
        owed -= n
        w = 2 * math.pi * (freq - dial_hz) / sample_rate
        parts.append(np.sin(phase + w * np.arange(1, n + 1)))
        phase = (phase + w * n) % (2 * math.pi)
    parts.append(np.zeros(int(tail_s * sample_rate)))
    signal = np.concatenate(parts)
    if noise:
        signal = signal + np.random.default_rng(seed).normal(0, noise, len(signal))
    return (np.clip(signal, -4, 4) * _FULL_SCALE).astype("<i2").tobytes()


def render_tones(tones: list[int], *, baud: float, spacing_hz: float, first_tone_hz: float,
                 sample_rate: int = 48000, **kwargs) -> bytes:
    """Audio of 4FSK `tones` (0-3) at `baud`, tone 0 at `first_tone_hz` of audio."""
    return render_steps([(first_tone_hz + t * spacing_hz, 1 / baud) for t in tones],
                        dial_hz=0.0, sample_rate=sample_rate, **kwargs)
