// <algorithm> without its C++17 parallel-algorithm declarations. libstdc++'s <algorithm>
// pulls in <pstl/glue_algorithm_defs.h> and through it <functional> and <unordered_map>,
// which cost a third of the umbrella's compile time and serve nothing here (qlib runs no
// std::execution policies). With libstdc++ the serial algorithms come from their own
// header; any other standard library gets <algorithm>.
#pragma once

#if defined(__GLIBCXX__) && defined(__has_include)
#if __has_include(<bits/stl_algo.h>)
#include <bits/stl_algobase.h>
#include <bits/stl_algo.h>
#define QLIB_DETAIL_SERIAL_ALGORITHM 1
#endif
#endif
#ifndef QLIB_DETAIL_SERIAL_ALGORITHM
#include <algorithm>
#endif
