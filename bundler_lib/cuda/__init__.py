"""A4 (CUDA collector) internals: registry (op registrations in csrc), cmake (compile settings),
cpp (includes, preprocessor conditions, definitions), schema (op schemas), collect (planning), emit
(the generated CUDA section). Entry point: bundler_lib.collect_cuda.run."""
