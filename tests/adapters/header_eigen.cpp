#include <qlib/eigen.hpp>
#include <qlib/eigen.hpp>
