"""TransformerConfig validation: a wrongly typed gin binding is named."""
import re

import numpy as np
import pytest

from research import models


@pytest.mark.parametrize('kwargs, message', [
    (dict(d_model='abc'), "TransformerConfig.d_model must be int, got 'abc'"),
    (dict(num_kv_heads='2'), "TransformerConfig.num_kv_heads must be int or None, got '2'"),
    (dict(use_bias=1), 'TransformerConfig.use_bias must be bool, got 1'),
    (dict(num_layers=True), 'TransformerConfig.num_layers must be int, got True'),
    (dict(init_std='0.1'), "TransformerConfig.init_std must be float, got '0.1'"),
])
def test_a_field_of_the_wrong_type_is_named(kwargs, message):
  with pytest.raises(models.ConfigError, match=re.escape(message)):
    models.TransformerConfig(**kwargs)


def test_numpy_scalars_and_ints_for_floats_are_accepted():
  config = models.TransformerConfig(d_model=np.int64(64), rope_theta=10000, init_std=1,
                                    use_bias=np.bool_(True))
  assert config.d_model == 64
