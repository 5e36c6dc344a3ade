# The data commands end to end on the real Fashion-MNIST package (dataset-fashion-mnist):
# convert it, read the HDF5 back and compare with the IDX reader byte for byte, look at the
# file with h5py, write an augmentation grid, and measure augmentation with bench --data.
set(FMNIST_DIR /usr/share/datasets/fashion-mnist)
set(FMNIST_H5 ${CMAKE_CURRENT_BINARY_DIR}/fashion-mnist.h5)
set(FMNIST_PNG ${CMAKE_CURRENT_BINARY_DIR}/fashion-mnist-views.png)
add_test(NAME convert_fmnist COMMAND $<TARGET_FILE:ssltrain> convert data.dataset=fashion_mnist --out ${FMNIST_H5})
add_test(NAME augment_fmnist COMMAND $<TARGET_FILE:ssltrain> augment data.dataset=fashion_mnist --count 6 --out ${FMNIST_PNG})
set_tests_properties(convert_fmnist augment_fmnist PROPERTIES LABELS "data;cli" ENVIRONMENT "${SSL_MPI_TEST_ENV}" TIMEOUT 300)
set_tests_properties(convert_fmnist PROPERTIES FIXTURES_SETUP fmnist_h5)

add_executable(test_convert_roundtrip test_convert_roundtrip.c)
target_link_libraries(test_convert_roundtrip PRIVATE ssl_app)
add_test(NAME convert_roundtrip_fmnist COMMAND test_convert_roundtrip fashion_mnist ${FMNIST_DIR} ${FMNIST_H5})
add_test(NAME check_h5_views COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/check_h5_views.py
         ${FMNIST_H5} ${FMNIST_PNG} 6 3 28 4)
set_tests_properties(convert_roundtrip_fmnist check_h5_views PROPERTIES LABELS "data;cli"
    ENVIRONMENT "${SSL_MPI_TEST_ENV}" TIMEOUT 300 FIXTURES_REQUIRED fmnist_h5 SKIP_RETURN_CODE 77)
set_tests_properties(check_h5_views PROPERTIES DEPENDS augment_fmnist)

add_test(NAME bench_data_fmnist COMMAND $<TARGET_FILE:ssltrain> bench --data bench.steps=1 bench.warmup=0
         data.batch=32 model.projector.hidden=64 model.projector.out=64)
set_tests_properties(bench_data_fmnist PROPERTIES LABELS "data;cli" ENVIRONMENT "${SSL_MPI_TEST_ENV}"
                     TIMEOUT 120 PASS_REGULAR_EXPRESSION "aug_views_per_s_per_core=[0-9]")

# The same on a CIFAR-10-format directory of synthetic colour images (tests/make_cifar.py):
# convert + byte-identical round trip, and a grid of views whose colour ops can be judged.
set(CIFAR_DIR ${CMAKE_CURRENT_BINARY_DIR}/cifar10-synthetic)
set(CIFAR_H5 ${CMAKE_CURRENT_BINARY_DIR}/cifar10-synthetic.h5)
add_test(NAME make_cifar COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/make_cifar.py ${CIFAR_DIR} 20)
set_tests_properties(make_cifar PROPERTIES FIXTURES_SETUP cifar_dir LABELS data)
add_test(NAME convert_cifar COMMAND $<TARGET_FILE:ssltrain> convert data.dataset=cifar10 data.path=${CIFAR_DIR}
         --out ${CIFAR_H5})
set_tests_properties(convert_cifar PROPERTIES FIXTURES_REQUIRED cifar_dir FIXTURES_SETUP cifar_h5)
add_test(NAME convert_roundtrip_cifar COMMAND test_convert_roundtrip cifar10 ${CIFAR_DIR} ${CIFAR_H5})
set_tests_properties(convert_roundtrip_cifar PROPERTIES FIXTURES_REQUIRED "cifar_dir;cifar_h5")
add_test(NAME augment_cifar COMMAND $<TARGET_FILE:ssltrain> augment data.dataset=cifar10 data.path=${CIFAR_DIR}
         --count 6 --out ${CMAKE_CURRENT_BINARY_DIR}/cifar10-views.png)
set_tests_properties(augment_cifar PROPERTIES FIXTURES_REQUIRED cifar_dir)
set_tests_properties(convert_cifar convert_roundtrip_cifar augment_cifar PROPERTIES LABELS "data;cli"
                     ENVIRONMENT "${SSL_MPI_TEST_ENV}" TIMEOUT 120)
