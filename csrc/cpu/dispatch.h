// Run-time choice of instruction set. A family header declares its table of
// kernels (a struct of function pointers, templated on the dtype) with
// DK_DECLARE_KERNELS(Table, name); each ISA copy of the family's .cpp defines
//   template <class T> const Table<T>& name##_table()   (in dk::cpu::<isa>)
// with DK_DEFINE_TABLE, and dispatch.cpp defines name##_kernels<T>(), which
// returns the copy for dk::active_isa(), chosen once.
#pragma once

#define DK_DECLARE_KERNELS(Table, name)                                  \
  namespace generic { template <class T> const Table<T>& name##_table(); } \
  namespace avx2 { template <class T> const Table<T>& name##_table(); }    \
  namespace avx512 { template <class T> const Table<T>& name##_table(); }  \
  template <class T>                                                     \
  const Table<T>& name##_kernels();

// In an ISA file, inside namespace dk::cpu::DK_ISA_NS, after the kernels.
#define DK_DEFINE_TABLE(Table, name, ...)                                \
  template <class T>                                                     \
  const Table<T>& name##_table() {                                       \
    static const Table<T> table = {__VA_ARGS__};                         \
    return table;                                                        \
  }                                                                      \
  template const Table<float>& name##_table<float>();                    \
  template const Table<double>& name##_table<double>();
