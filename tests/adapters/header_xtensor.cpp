#include <qlib/xtensor.hpp>
#include <qlib/xtensor.hpp>
