# The answer component: ref and fast on the CPU (there is no CUDA version).
r1_test(test_answer LABELS cpu TIMEOUT 120)
