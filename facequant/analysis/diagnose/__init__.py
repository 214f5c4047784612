"""Layer diagnostics: where in the graph quantization noise enters, and how it grows with distance.

For each static QDQ backend and each distance, every intermediate tensor of the float graph is
compared with its counterpart in the quantized graph on the same simulated probes the sweep
uses (``ProbeSet.probe_crops``). One row per backend x distance x layer (``layers.csv``):

- ``snr_db`` = 10 log10(sum f^2 / sum (f - q)^2) over every element of the tensor on every probe
  at that distance (f float, q the quantized graph's tensor after its Q/DQ pair, i.e. what the
  next layer sees). ORT's ``compute_signal_to_quantization_noice_ratio`` is the same ratio; we
  accumulate the two sums batch by batch instead of holding every tensor, and write +inf when
  the tensors are identical where ORT floors both norms at machine epsilon.
- ``psnr_db`` = 10 log10(peak^2 / MSE), peak = max |f| over the float tensor (003_'s
  definition takes the peak from the float tensor; its formula images are not in the report,
  so "max absolute value" is our reading), MSE = sum (f - q)^2 / number of elements.
- ``act_bins_used``: how many of the 2^bits levels of the tensor's QuantizeLinear (its scale,
  zero point and integer type) the quantized activation occupies on these probes;
  ``act_bin_utilization`` = bins used / 2^bits; ``act_at_rails`` the share of codes on the lowest
  or highest level (saturation: values at or beyond the calibrated range).
- ``weight_range`` = max - min of the float weights; ``weight_asymmetry`` = |max + min| /
  (max - min): 000_ gives a 0-1 scale (0 symmetric, 1 fully one-sided) but no formula, and this
  is the formula with exactly those end points; ``channel_range_ratio`` = largest per-output-
  channel range / smallest live one (a single per-tensor scale must cover the widest channel,
  so the narrowest gets range_ratio times fewer levels); dead channels (range below 1e-6 of the
  widest: MobileFaceNet has many all-zero ones) are left out.

How the comparison runs, and why it costs about a sweep rather than one pass per layer: every
graph is augmented once and its session serves every distance. The float graph goes through
ORT's ``modify_model_output_intermediate_tensors`` (every float tensor exposed, flattened),
pruned to the tensors reported; it runs once per batch, shared by all backends. Each quantized
graph exposes, per reported tensor, its dequantized value and its QuantizeLinear's integer codes,
and never the tensor before quantization: that would stop ORT fusing DQ -> op -> Q into its
integer kernels, so the embedding here is bit-identical to the sweep's backend (run.json
records the check). Tensors are paired by ORT's ``create_activation_matching`` (its QDQ naming)
and weights by ``create_weight_matching``. Statistics are reduced batch by batch to running sums
and level sets on a thread pool (NumPy releases the GIL), the previous backend's while the next
one's graph runs, and the augmented sessions do not spin, which would starve that pool. Measured
reasons for each choice are in the comments where they are made.

Modules: taps (what is compared), measure (graphs and statistics), run (the run), report
(files, plots, summary)."""
