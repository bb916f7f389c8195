"""Closed-form scaling laws and the published constants they were fitted with.

Kaplan et al. (2020), "Scaling Laws for Neural Language Models" (KM below), and Hoffmann et al.
(2022), "Training Compute-Optimal Large Language Models" (Chinchilla). N is parameters, D
training tokens, C training FLOPs (C ~ 6ND), losses in nats per token.
"""
import dataclasses

import numpy as np

PF_DAY = 1e15 * 24 * 3600  # FLOPs in a petaflop/s-day, Kaplan's compute unit.


@dataclasses.dataclass(frozen=True)
class ChinchillaLaw:
  """L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, Eq. 2)."""
  E: float
  A: float
  B: float
  alpha: float
  beta: float

  def loss(self, n, d):
    n, d = np.asarray(n, float), np.asarray(d, float)
    return self.E + self.A / n ** self.alpha + self.B / d ** self.beta

  @property
  def a(self) -> float:
    """N_opt ~ C^a with a = beta / (alpha + beta) (Eq. 4)."""
    return self.beta / (self.alpha + self.beta)

  @property
  def b(self) -> float:
    """D_opt ~ C^b with b = alpha / (alpha + beta) (Eq. 4)."""
    return self.alpha / (self.alpha + self.beta)

  def optimal(self, c, flops_per_param_token: float = 6.0):
    """(N_opt, D_opt) minimizing L under C = k N D (Eq. 4, k = 6).

    G = (alpha A / (beta B))^(1 / (alpha + beta)); N_opt = G (C/k)^a; D_opt = (C/k)^b / G.
    """
    g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
    ck = np.asarray(c, float) / flops_per_param_token
    return g * ck ** self.a, ck ** self.b / g


@dataclasses.dataclass(frozen=True)
class KaplanLaw:
  """The KM laws (Kaplan et al. 2020, Eqs. 1.1-1.3 and 1.5)."""
  alpha_N: float
  N_c: float
  alpha_D: float
  D_c: float
  alpha_C: float = float('nan')
  C_c: float = float('nan')

  def loss_n(self, n):
    """L(N) = (N_c / N)^alpha_N: converged models, N non-embedding (Eq. 1.1)."""
    return (self.N_c / np.asarray(n, float)) ** self.alpha_N

  def loss_d(self, d):
    """L(D) = (D_c / D)^alpha_D: large models, early stopped (Eq. 1.2)."""
    return (self.D_c / np.asarray(d, float)) ** self.alpha_D

  def loss_c(self, c):
    """L(C_min) = (C_c / C_min)^alpha_C: the compute-efficient frontier (Eq. 1.3)."""
    return (self.C_c / np.asarray(c, float)) ** self.alpha_C

  def loss(self, n, d):
    """L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D (Eq. 1.5)."""
    n, d = np.asarray(n, float), np.asarray(d, float)
    return ((self.N_c / n) ** (self.alpha_N / self.alpha_D) + self.D_c / d) ** self.alpha_D

  @property
  def n_opt_exponent(self) -> float:
    """N_opt ~ C_min^(alpha_C / alpha_N) (Kaplan Eq. 6.1 combined with 1.1 and 1.3)."""
    return self.alpha_C / self.alpha_N


# Hoffmann et al. (2022), Approach 3 point estimates (Sec. 3.3, Eq. 10).
CHINCHILLA = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
# Besiroglu et al. (2024), "Chinchilla Scaling: A replication attempt", Eq. 3.
CHINCHILLA_REPLICATION = ChinchillaLaw(E=1.82, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
# Kaplan et al. (2020), Sec. 1.2 and Table 5; C_c converted from 3.1e8 PF-days to FLOPs.
KAPLAN = KaplanLaw(alpha_N=0.076, N_c=8.8e13, alpha_D=0.095, D_c=5.4e13,
                   alpha_C=0.050, C_c=3.1e8 * PF_DAY)

# Compute budgets of Chinchilla's IsoFLOP profiles (Hoffmann et al. 2022, Fig. 3).
CHINCHILLA_BUDGETS = (6e18, 1e19, 3e19, 6e19, 1e20, 3e20, 6e20, 1e21, 3e21)
